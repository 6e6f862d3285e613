"""The stand-in's HTTP server: Qdrant's answer envelope, errors, collections, points and snapshots."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "1.12.4"
PEER_ID = 5384221717453735
CHUNK = 1024 * 1024
PRIORITIES = ("no_sync", "snapshot", "replica")
COLLECTION_FILE = "collection.json"


class QdrantError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def not_found_collection(name: str) -> QdrantError:
    return QdrantError(404, f"Not found: Collection `{name}` doesn't exist!")


class Store:
    """Collections in memory (persisted as JSON on every change) and snapshot files on disk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.snapshots = self.root / "snapshots"
        self.data = self.root / "collections.json"
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.collections: dict[str, dict] = json.loads(self.data.read_text()) if self.data.exists() else {}
        self.recoveries: list[dict] = []
        self.operation = 0

    def save(self) -> None:
        tmp = self.data.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.collections))
        os.replace(tmp, self.data)

    def collection(self, name: str) -> dict:
        if name not in self.collections:
            raise not_found_collection(name)
        return self.collections[name]

    # -- snapshots --------------------------------------------------------------------------------------

    def snapshot_dir(self, collection: str | None) -> Path:
        return self.snapshots / collection if collection else self.snapshots

    def snapshot_path(self, collection: str | None, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise QdrantError(400, f"Bad request: invalid snapshot name {name}")
        path = self.snapshot_dir(collection) / name
        if not path.is_file():
            what = f"Snapshot {name} of collection {collection}" if collection else f"Full snapshot {name}"
            raise QdrantError(404, f"Not found: {what} not found")
        return path

    def _new_name(self, collection: str | None) -> Path:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
        base = f"{collection}-{PEER_ID}-{stamp}" if collection else f"full-snapshot-{stamp}"
        directory = self.snapshot_dir(collection)
        directory.mkdir(parents=True, exist_ok=True)
        path, count = directory / f"{base}.snapshot", 1
        while path.exists():
            count += 1
            path = directory / f"{base}-{count}.snapshot"
        return path

    def create_snapshot(self, collection: str | None) -> dict:
        with self.lock:
            names = [collection] if collection else sorted(self.collections)
            for name in names:
                self.collection(name)
            path = self._new_name(collection)
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as archive:
                for name in names:
                    member = COLLECTION_FILE if collection else f"{name}/{COLLECTION_FILE}"
                    _add_json(archive, member, dict(self.collections[name], name=name))
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, path)
            return describe(path)

    def list_snapshots(self, collection: str | None) -> list[dict]:
        if collection:
            self.collection(collection)
        directory = self.snapshot_dir(collection)
        if not directory.is_dir():
            return []
        return [describe(path) for path in sorted(directory.iterdir()) if path.is_file()
                and path.name.endswith(".snapshot")]

    def delete_snapshot(self, collection: str | None, name: str) -> None:
        if collection:
            self.collection(collection)
        self.snapshot_path(collection, name).unlink()
        checksum_file = self.snapshot_dir(collection) / (name + ".checksum")
        checksum_file.unlink(missing_ok=True)

    def recover(self, collection: str, path: Path, priority: str, checksum: str | None) -> None:
        if priority not in PRIORITIES:
            raise QdrantError(400, f"Bad request: unknown priority {priority!r}, expected one of "
                                   f"{', '.join(PRIORITIES)}")
        if checksum is not None:
            actual = sha256_file(path)
            if actual != checksum.lower():
                raise QdrantError(400, f"Bad request: Snapshot checksum mismatch: expected {checksum}, got {actual}")
        try:
            with tarfile.open(path, mode="r") as archive:
                member = archive.extractfile(COLLECTION_FILE)
                content = json.loads(member.read()) if member else None
        except (tarfile.TarError, KeyError, ValueError) as exc:
            raise QdrantError(400, f"Bad request: Snapshot is not a valid collection snapshot: {exc}") from None
        if not content:
            raise QdrantError(400, "Bad request: Snapshot is not a valid collection snapshot")
        with self.lock:
            self.collections[collection] = {"config": content["config"], "points": content["points"]}
            self.save()
            self.recoveries.append({"collection": collection, "priority": priority, "checksum": checksum})


def _add_json(archive: tarfile.TarFile, name: str, document: dict) -> None:
    data = json.dumps(document, sort_keys=True).encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    archive.addfile(info, io.BytesIO(data))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path: Path) -> dict:
    """A SnapshotDescription as Qdrant returns it."""
    stat = path.stat()
    created = dt.datetime.fromtimestamp(stat.st_mtime, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return {"name": path.name, "creation_time": created, "size": stat.st_size, "checksum": sha256_file(path)}


# -- HTTP -----------------------------------------------------------------------------------------------------

ROUTES: list[tuple[str, re.Pattern, str]] = []


def route(method: str, pattern: str):
    def register(function):
        ROUTES.append((method, re.compile("^" + pattern + "$"), function.__name__))
        return function
    return register


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qdrant-standin"

    def log_message(self, *args) -> None:
        pass

    @property
    def store(self) -> Store:
        return self.server.store

    def _dispatch(self) -> None:
        self.started = time.monotonic()
        split = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        self.server.requests.append((self.command, split.path, dict(self.query)))
        try:
            self._check_api_key()
            for method, pattern, name in ROUTES:
                match = pattern.match(split.path)
                if match and method == self.command:
                    getattr(self, name)(*[unquote(group) for group in match.groups()])
                    return
            raise QdrantError(404, f"Not found: {self.command} {split.path}")
        except QdrantError as exc:
            self._drain()
            self.send_json(exc.status, {"status": {"error": str(exc)}, "time": self.elapsed()})

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def _check_api_key(self) -> None:
        expected = self.server.api_key
        if expected and self.headers.get("api-key") != expected:
            raise QdrantError(401, "Must provide an API key or an Authorization bearer token")

    def _drain(self) -> None:
        if not getattr(self, "body_read", False):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.body_read = True

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 6)

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        self.body_read = True
        return self.rfile.read(length) if length else b""

    def json_body(self) -> dict:
        raw = self.body()
        try:
            document = json.loads(raw or b"{}")
        except ValueError:
            raise QdrantError(400, "Bad request: body is not valid JSON") from None
        if not isinstance(document, dict):
            raise QdrantError(400, "Bad request: body must be a JSON object")
        return document

    def send_json(self, status: int, document: dict) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def ok(self, result) -> None:
        self._drain()
        if self.query.get("wait", "true").lower() == "false" and self.command != "GET":
            self.send_json(202, {"result": None, "status": "accepted", "time": self.elapsed()})
            return
        self.send_json(200, {"result": result, "status": "ok", "time": self.elapsed()})

    def send_file(self, path: Path) -> None:
        self._drain()
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Content-Disposition", f'attachment; filename="{path.name}"')
        self.end_headers()
        with open(path, "rb") as handle:
            shutil.copyfileobj(handle, self.wfile, CHUNK)

    # -- service and collections ----------------------------------------------------------------------------

    @route("GET", r"/")
    def root(self) -> None:
        self._drain()
        self.send_json(200, {"title": "qdrant - vector search engine", "version": VERSION, "commit": "standin"})

    @route("GET", r"/collections")
    def list_collections(self) -> None:
        with self.store.lock:
            self.ok({"collections": [{"name": name} for name in sorted(self.store.collections)]})

    @route("PUT", r"/collections/([^/]+)")
    def create_collection(self, name: str) -> None:
        config = self.json_body()
        if "vectors" not in config:
            raise QdrantError(422, "Format error in JSON body: missing field `vectors`")
        with self.store.lock:
            if name in self.store.collections:
                raise QdrantError(409, f"Wrong input: Collection `{name}` already exists!")
            self.store.collections[name] = {"config": {"params": {"vectors": config["vectors"]}}, "points": {}}
            self.store.save()
        self.ok(True)

    @route("GET", r"/collections/([^/]+)")
    def collection_info(self, name: str) -> None:
        with self.store.lock:
            collection = self.store.collection(name)
            count = len(collection["points"])
            self.ok({"status": "green", "optimizer_status": "ok", "points_count": count,
                     "indexed_vectors_count": count, "segments_count": 1, "config": collection["config"],
                     "payload_schema": {}})

    @route("DELETE", r"/collections/([^/]+)")
    def delete_collection(self, name: str) -> None:
        with self.store.lock:
            existed = self.store.collections.pop(name, None) is not None
            self.store.save()
        self.ok(existed)

    @route("PUT", r"/collections/([^/]+)/points")
    def upsert_points(self, name: str) -> None:
        body = self.json_body()
        points = body.get("points")
        if not isinstance(points, list):
            raise QdrantError(422, "Format error in JSON body: missing field `points`")
        with self.store.lock:
            collection = self.store.collection(name)
            for point in points:
                if "id" not in point or "vector" not in point:
                    raise QdrantError(422, "Format error in JSON body: a point needs `id` and `vector`")
                collection["points"][str(point["id"])] = {"id": point["id"], "vector": point["vector"],
                                                          "payload": point.get("payload") or {}}
            self.store.save()
            self.store.operation += 1
            self.ok({"operation_id": self.store.operation, "status": "completed"})

    @route("POST", r"/collections/([^/]+)/points/count")
    def count_points(self, name: str) -> None:
        self.json_body()
        with self.store.lock:
            self.ok({"count": len(self.store.collection(name)["points"])})

    @route("POST", r"/collections/([^/]+)/points/scroll")
    def scroll_points(self, name: str) -> None:
        body = self.json_body()
        with_vector = bool(body.get("with_vector", False))
        with self.store.lock:
            points = sorted(self.store.collection(name)["points"].values(), key=lambda point: str(point["id"]))
        limit = int(body.get("limit") or 10)
        offset = body.get("offset")
        if offset is not None:
            points = [point for point in points if str(point["id"]) >= str(offset)]
        page, rest = points[:limit], points[limit:]
        self.ok({"points": [dict({"id": point["id"], "payload": point["payload"]},
                                 **({"vector": point["vector"]} if with_vector else {})) for point in page],
                 "next_page_offset": rest[0]["id"] if rest else None})

    # -- snapshots ----------------------------------------------------------------------------------------

    @route("POST", r"/collections/([^/]+)/snapshots")
    def create_collection_snapshot(self, name: str) -> None:
        self.ok(self.store.create_snapshot(name))

    @route("GET", r"/collections/([^/]+)/snapshots")
    def list_collection_snapshots(self, name: str) -> None:
        self.ok(self.store.list_snapshots(name))

    @route("GET", r"/collections/([^/]+)/snapshots/([^/]+)")
    def download_collection_snapshot(self, name: str, snapshot: str) -> None:
        self.store.collection(name)
        self.send_file(self.store.snapshot_path(name, snapshot))

    @route("DELETE", r"/collections/([^/]+)/snapshots/([^/]+)")
    def delete_collection_snapshot(self, name: str, snapshot: str) -> None:
        self.store.delete_snapshot(name, snapshot)
        self.ok(True)

    @route("POST", r"/snapshots")
    def create_full_snapshot(self) -> None:
        self.ok(self.store.create_snapshot(None))

    @route("GET", r"/snapshots")
    def list_full_snapshots(self) -> None:
        self.ok(self.store.list_snapshots(None))

    @route("GET", r"/snapshots/([^/]+)")
    def download_full_snapshot(self, snapshot: str) -> None:
        self.send_file(self.store.snapshot_path(None, snapshot))

    @route("DELETE", r"/snapshots/([^/]+)")
    def delete_full_snapshot(self, snapshot: str) -> None:
        self.store.delete_snapshot(None, snapshot)
        self.ok(True)

    @route("PUT", r"/collections/([^/]+)/snapshots/recover")
    def recover_from_location(self, name: str) -> None:
        body = self.json_body()
        location = body.get("location")
        if not isinstance(location, str):
            raise QdrantError(422, "Format error in JSON body: missing field `location`")
        if not location.startswith("file://"):
            raise QdrantError(400, "Bad request: the stand-in recovers from file:// locations only")
        path = Path(unquote(location[len("file://"):]))
        if not path.is_file():
            raise QdrantError(404, f"Not found: Snapshot file {path} does not exist")
        self.store.recover(name, path, body.get("priority") or "no_sync", body.get("checksum"))
        self.ok(True)

    @route("POST", r"/collections/([^/]+)/snapshots/upload")
    def recover_from_upload(self, name: str) -> None:
        content_type = self.headers.get("Content-Type", "")
        match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
        if not content_type.startswith("multipart/form-data") or not match:
            raise QdrantError(400, "Bad request: expected a multipart/form-data body with a `snapshot` field")
        data = multipart_field(self.body(), match.group(1).encode(), b"snapshot")
        if data is None:
            raise QdrantError(400, "Bad request: the form has no `snapshot` field")
        directory = self.store.snapshot_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        upload = directory / f".upload-{threading.get_ident()}.snapshot"
        upload.write_bytes(data)
        try:
            self.store.recover(name, upload, self.query.get("priority") or "no_sync", self.query.get("checksum"))
        finally:
            upload.unlink(missing_ok=True)
        self.ok(True)


def multipart_field(body: bytes, boundary: bytes, field: bytes) -> bytes | None:
    """The content of one field of a multipart/form-data body."""
    for part in body.split(b"--" + boundary):
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        if re.search(rb'name="' + re.escape(field) + rb'"', head):
            return content[:-2] if content.endswith(b"\r\n") else content
    return None


class QdrantStandin:
    """``with QdrantStandin(storage_dir) as server: server.url``; port 0 picks a free port."""

    def __init__(self, storage_dir, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None) -> None:
        self.store = Store(Path(storage_dir))
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._server.store = self.store
        self._server.api_key = api_key
        self._server.requests = []
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self.url = "http://%s:%d" % (host, self._server.server_address[1])

    @property
    def requests(self) -> list[tuple[str, str, dict]]:
        return self._server.requests

    def start(self) -> QdrantStandin:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> QdrantStandin:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
