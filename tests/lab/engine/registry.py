"""Pulling models from an OCI-style registry the way Ollama does, with shared, verified downloads."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from .names import DEFAULT_HOST, ModelName
from .store import MEDIA_MANIFEST, ModelStore, StoreError, check_digest

log = logging.getLogger("lab.engine")

CHUNK = 256 * 1024
PROGRESS_INTERVAL = 0.1
TIMEOUT = 30.0

Emit = Callable[[dict], None]


class PullError(Exception):
    """The pull failed; the message is what Ollama would tell the client."""


@dataclass
class RegistryConfig:
    # OLLAMA_LAB_REGISTRY: the one deliberate difference from Ollama (see docs/lab-engine.md).
    default_registry_url: str = ""
    user_agent: str = "ollama-lab"

    def base_url(self, name: ModelName, insecure: bool) -> str:
        if name.host == DEFAULT_HOST and self.default_registry_url and not name.scheme:
            return self.default_registry_url.rstrip("/")
        scheme = name.scheme or ("http" if insecure else "https")
        if scheme == "http" and not insecure:
            raise PullError("insecure protocol http")
        return f"{scheme}://{name.host}"


@dataclass
class Download:
    digest: str
    total: int
    completed: int = 0
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class DownloadManager:
    """One download per blob digest, however many pulls want it at the same time."""

    def __init__(self, store: ModelStore, user_agent: str) -> None:
        self.store = store
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._active: dict[str, Download] = {}

    def fetch(self, url: str, digest: str, size: int) -> Download:
        with self._lock:
            download = self._active.get(digest)
            if download is not None:
                return download
            download = Download(digest=digest, total=size)
            if self.store.has_blob(digest, size):
                download.completed = size
                download.done.set()
                return download
            self._active[digest] = download
        threading.Thread(target=self._run, args=(url, download), name=f"download-{digest[7:19]}", daemon=True).start()
        return download

    def _run(self, url: str, download: Download) -> None:
        partial = self.store.partial_path(download.digest)
        try:
            self._transfer(url, download, partial)
        except PullError as exc:
            download.error = str(exc)
        except urllib.error.HTTPError as exc:
            download.error = f"download {download.digest}: registry answered {exc.code} {exc.reason}"
        except (OSError, http.client.HTTPException) as exc:
            download.error = f"download {download.digest}: {_reason(exc) or type(exc).__name__}"
        finally:
            partial.unlink(missing_ok=True)
            with self._lock:
                self._active.pop(download.digest, None)
            download.done.set()

    def _transfer(self, url: str, download: Download, partial) -> None:
        hasher = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response, open(partial, "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                download.completed += len(chunk)
        if download.completed != download.total:
            raise PullError(
                f"download {download.digest}: unexpected EOF after {download.completed} of {download.total} bytes"
            )
        got = "sha256:" + hasher.hexdigest()
        if got != download.digest:
            raise PullError(f"digest mismatch, file must be downloaded again: want {download.digest}, got {got}")
        os.replace(partial, self.store.blob_path(download.digest))


class Puller:
    def __init__(self, store: ModelStore, config: RegistryConfig) -> None:
        self.store = store
        self.config = config
        self.downloads = DownloadManager(store, config.user_agent)

    def pull(self, name: ModelName, insecure: bool, emit: Emit) -> None:
        emit({"status": "pulling manifest"})
        base = self.config.base_url(name, insecure)
        raw = self._fetch_manifest(base, name)
        manifest = _parse_manifest(raw)
        layers = [*manifest["layers"], manifest["config"]]
        with self.store.pinned([layer["digest"] for layer in layers]):
            for layer in layers:
                self._pull_layer(base, name, layer, emit)
            emit({"status": "verifying sha256 digest"})
            for layer in layers:
                if not self.store.has_blob(layer["digest"], int(layer["size"])):
                    raise PullError(f"blob {layer['digest']} is missing after download")
            emit({"status": "writing manifest"})
            self.store.write_manifest(name, raw)
        log.info('msg="pulled model" model=%s from=%s', name.display, base)
        emit({"status": "success"})

    def _fetch_manifest(self, base: str, name: ModelName) -> bytes:
        url = f"{base}/v2/{name.repository}/manifests/{name.tag}"
        request = urllib.request.Request(url, headers={"Accept": MEDIA_MANIFEST, "User-Agent": self.config.user_agent})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise PullError("pull model manifest: file does not exist") from None
            raise PullError(f'pull model manifest: GET "{url}": registry answered {exc.code}') from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise PullError(f'pull model manifest: GET "{url}": {_reason(exc) or type(exc).__name__}') from None

    def _pull_layer(self, base: str, name: ModelName, layer: dict, emit: Emit) -> None:
        digest, size = layer["digest"], int(layer["size"])
        status = f"pulling {digest.removeprefix('sha256:')[:12]}"
        download = self.downloads.fetch(f"{base}/v2/{name.repository}/blobs/{digest}", digest, size)
        while not download.done.wait(PROGRESS_INTERVAL):
            emit({"status": status, "digest": digest, "total": size, "completed": download.completed})
        if download.error:
            raise PullError(download.error)
        if not self.store.has_blob(digest, size):
            raise PullError(f"download {digest}: blob is missing after download")
        emit({"status": status, "digest": digest, "total": size, "completed": size})


def _parse_manifest(raw: bytes) -> dict:
    try:
        manifest = json.loads(raw)
        entries = [*manifest["layers"], manifest["config"]]
        for entry in entries:
            check_digest(entry["digest"])
            int(entry["size"])
    except (ValueError, KeyError, TypeError, StoreError) as exc:
        raise PullError(f"pull model manifest: invalid manifest: {exc}") from None
    return manifest


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)
