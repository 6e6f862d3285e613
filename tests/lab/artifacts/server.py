"""Static artifact and model-registry server for the lab (test infrastructure, never for production).

Serves a tree built by ``lab.artifacts.build`` read-only over HTTP: release archives, and a registry in
the static layout ``v2/<namespace>/<model>/manifests/<tag>`` / ``v2/<namespace>/<model>/blobs/sha256:<hex>``
with registry content types, ``Docker-Content-Digest``, HEAD, byte ranges (206) and registry-style 404s.

Self-contained on purpose (standard library only): it is copied alone onto the lab's artifact host and run
as ``python3 server.py --root DIR --bind ADDR --port 8080``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CHUNK = 256 * 1024
CONTENT_TYPES = {
    ".tgz": "application/gzip",
    ".gz": "application/gzip",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",  # pip reads a --find-links page only when it is text/html
}
REGISTRY_PATH = re.compile(r"^/v2/(?P<repo>[^/]+(?:/[^/]+)*)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ArtifactServer:
    """The server on a socket; ``start()`` runs it in a background thread (tests), ``serve_forever()`` in front."""

    def __init__(
        self,
        root: Path,
        bind: str = "127.0.0.1",
        port: int = 8080,
        *,
        access_log=None,
        rate_limit: int = 0,
        echo: bool = True,
    ) -> None:
        """``access_log``: a text file to append the request log to; ``echo``: also print it on stderr."""
        self.root = Path(root).resolve()
        self.echo = echo
        self.rate_limit = rate_limit
        self.access_log = access_log
        self.requests: list[dict] = []
        self._log_lock = threading.Lock()
        handler = type("BoundArtifactHandler", (ArtifactHandler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer((bind, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{port}"

    def record(self, entry: dict) -> None:
        line = " ".join(f"{key}={value}" for key, value in entry.items())
        with self._log_lock:
            self.requests.append(entry)
            del self.requests[:-10000]  # bounded: a long-lived server must not grow without end
            if self.echo:
                print(line, file=sys.stderr, flush=True)
            if self.access_log is not None:
                print(line, file=self.access_log, flush=True)

    def serve_forever(self) -> None:
        self.record({"msg": "listening", "url": self.url, "root": str(self.root)})
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ArtifactServer:
        self._thread = threading.Thread(target=self.serve_forever, name="lab-artifacts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ArtifactServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ArtifactHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, a keep-alive client's delayed ACK
    # adds about 40 ms to every answer (real Ollama, in Go, sets TCP_NODELAY).
    disable_nagle_algorithm = True
    server_version = "nti-lab-artifacts"
    sys_version = ""
    server_state: ArtifactServer

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Silenced: every request is recorded once, in ``_answer``."""

    def _answer(self, send_body: bool) -> None:
        started = time.monotonic()
        path = unquote(urlsplit(self.path).path)
        status, sent = 500, 0
        try:
            status, sent = self._route(path, send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server_state.record(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "client": self.client_address[0],
                    "method": self.command,
                    "path": path,
                    "status": status,
                    "bytes": sent,
                    "range": self.headers.get("Range", "-"),
                    "ms": round((time.monotonic() - started) * 1000, 1),
                }
            )

    def _route(self, path: str, send_body: bool) -> tuple[int, int]:
        if path in ("/v2", "/v2/"):
            return self._send_json(200, {}, send_body)
        match = REGISTRY_PATH.match(path)
        file = self._resolve(path)
        if file is None or not file.is_file():
            return self._not_found(match, path, send_body)
        return self._send_file(file, match, send_body)

    def _resolve(self, path: str) -> Path | None:
        root = self.server_state.root
        candidate = (root / path.lstrip("/")).resolve()
        if candidate != root and root not in candidate.parents:
            return None
        return candidate

    def _send_file(self, file: Path, match: re.Match | None, send_body: bool) -> tuple[int, int]:
        size = file.stat().st_size
        headers = {"Content-Type": _content_type(file, match), "Accept-Ranges": "bytes"}
        if match:
            headers["Docker-Content-Digest"] = _digest_header(file, match)
        first, last = 0, size - 1
        status = 200
        requested = self.headers.get("Range")
        if requested:
            parsed = _parse_range(requested, size)
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416, 0
            first, last = parsed
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        length = max(0, last - first + 1)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if not send_body:
            return status, 0
        return status, self._copy(file, first, length)

    def _copy(self, file: Path, offset: int, length: int) -> int:
        sent = 0
        rate = self.server_state.rate_limit
        started = time.monotonic()
        with open(file, "rb") as handle:
            handle.seek(offset)
            while sent < length:
                chunk = handle.read(min(CHUNK, length - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
                if rate:
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        return sent

    def _not_found(self, match: re.Match | None, path: str, send_body: bool) -> tuple[int, int]:
        if match is None:
            return self._send_json(
                404, {"errors": [{"code": "NOT_FOUND", "message": "not found", "detail": path}]}, send_body
            )
        repo, kind, ref = match.group("repo", "kind", "ref")
        if not self._resolve(f"/v2/{repo}").is_dir():
            code, message = "NAME_UNKNOWN", "repository name not known to registry"
        elif kind == "manifests":
            code, message = "MANIFEST_UNKNOWN", "manifest unknown"
        else:
            code, message = "BLOB_UNKNOWN", "blob unknown to registry"
        detail = {"name": repo, "tag" if kind == "manifests" else "digest": ref}
        return self._send_json(404, {"errors": [{"code": code, "message": message, "detail": detail}]}, send_body)

    def _send_json(self, status: int, payload: object, send_body: bool) -> tuple[int, int]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if status == 200 and not payload:
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.end_headers()
        if send_body:
            self.wfile.write(body)
            return status, len(body)
        return status, 0


def _content_type(file: Path, match: re.Match | None) -> str:
    if match and match.group("kind") == "manifests":
        return MEDIA_MANIFEST
    if match:
        return "application/octet-stream"
    return CONTENT_TYPES.get(file.suffix, "application/octet-stream")


def _digest_header(file: Path, match: re.Match) -> str:
    if match.group("kind") == "blobs":
        return match.group("ref")
    return "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest()


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (first, last), or None when it cannot be satisfied."""
    match = RANGE.match(header.strip())
    if not match or size == 0:
        return None
    start, end = match.groups()
    if not start and not end:
        return None
    if not start:
        suffix = int(end)
        return (max(0, size - suffix), size - 1) if suffix else None
    first = int(start)
    last = min(int(end), size - 1) if end else size - 1
    if first >= size or last < first:
        return None
    return first, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lab artifact and model registry server (tests only).")
    parser.add_argument("--root", required=True, type=Path, help="tree built by lab.artifacts.build")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", default=8080, type=int, help="port to listen on (default 8080)")
    parser.add_argument("--access-log", type=Path, help="also append the request log to this file")
    parser.add_argument("--rate-limit", type=int, default=0, help="bytes per second per response (0: unlimited)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a directory")
    access_log = open(args.access_log, "a", encoding="utf-8") if args.access_log else None  # noqa: SIM115
    server = ArtifactServer(args.root, args.bind, args.port, access_log=access_log, rate_limit=args.rate_limit)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
