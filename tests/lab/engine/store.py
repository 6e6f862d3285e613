"""Models on disk in Ollama's layout: ``manifests/<host>/<namespace>/<model>/<tag>`` and ``blobs/sha256-<hex>``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .names import InvalidName, ModelName

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class StoreError(Exception):
    """The model store on disk is not in a usable state."""


@dataclass
class StoredModel:
    name: ModelName
    manifest: dict
    raw: bytes
    modified_at: dt.datetime
    config: dict = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def layers(self) -> list[dict]:
        return list(self.manifest.get("layers") or [])

    @property
    def size(self) -> int:
        config_size = int((self.manifest.get("config") or {}).get("size") or 0)
        return config_size + sum(int(layer.get("size") or 0) for layer in self.layers)

    @property
    def weights_size(self) -> int:
        return sum(int(layer.get("size") or 0) for layer in self.layers if layer.get("mediaType") == MEDIA_MODEL)

    @property
    def content_key(self) -> str:
        """Names the model's content, so that a copy (an alias) answers exactly like its source."""
        weights = [layer.get("digest", "") for layer in self.layers if layer.get("mediaType") == MEDIA_MODEL]
        return weights[0] if weights else self.digest

    @property
    def lab(self) -> dict:
        return dict(self.config.get("lab") or {})

    def details(self) -> dict:
        return {
            "parent_model": "",
            "format": self.config.get("model_format", "gguf"),
            "family": self.config.get("model_family", ""),
            "families": self.config.get("model_families"),
            "parameter_size": self.config.get("model_type", ""),
            "quantization_level": self.config.get("file_type", ""),
        }


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise StoreError(f"invalid digest {digest!r}")
    return digest


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifests_dir = self.root / "manifests"
        self.blobs_dir = self.root / "blobs"
        self._lock = threading.RLock()
        self._pinned: Counter[str] = Counter()
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.manifests_dir.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / check_digest(digest).replace(":", "-")

    def partial_path(self, digest: str) -> Path:
        return self.blob_path(digest).with_name(self.blob_path(digest).name + "-partial")

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        path = self.blob_path(digest)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests_dir.joinpath(*name.manifest_parts())

    def get(self, name: ModelName) -> StoredModel | None:
        path = self.manifest_path(name)
        try:
            raw = path.read_bytes()
            modified = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC).astimezone()
        except FileNotFoundError:
            return None
        manifest = json.loads(raw)
        return StoredModel(name=name, manifest=manifest, raw=raw, modified_at=modified, config=self._config(manifest))

    def list(self) -> list[StoredModel]:
        models = []
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            host, namespace, model, tag = path.relative_to(self.manifests_dir).parts
            try:
                name = ModelName(host=host, namespace=namespace, model=model, tag=tag)
                name.validate()
                stored = self.get(name)
            except (InvalidName, ValueError):
                continue
            if stored is not None:
                models.append(stored)
        return sorted(models, key=lambda stored: stored.modified_at, reverse=True)

    def write_manifest(self, name: ModelName, raw: bytes) -> None:
        """Write (or replace) a manifest; blobs only the replaced manifest used are removed, as Ollama prunes."""
        with self._lock:
            previous = self.get(name)
            write_atomically(self.manifest_path(name), raw)
            if previous is not None:
                self._remove_unused(self._digests_of(previous.manifest))

    def copy(self, source: ModelName, destination: ModelName) -> bool:
        with self._lock:
            stored = self.get(source)
            if stored is None:
                return False
            self.write_manifest(destination, stored.raw)
            return True

    def delete(self, name: ModelName) -> bool:
        """Remove the manifest, then each of its blobs that no other manifest uses."""
        with self._lock:
            stored = self.get(name)
            if stored is None:
                return False
            self.manifest_path(name).unlink()
            self._remove_empty_dirs(self.manifest_path(name).parent)
            self._remove_unused(self._digests_of(stored.manifest))
            return True

    @contextmanager
    def pinned(self, digests: list[str]) -> Iterator[None]:
        """Keep these blobs while a pull that needs them has not written its manifest yet."""
        with self._lock:
            self._pinned.update(digests)
        try:
            yield
        finally:
            with self._lock:
                self._pinned.subtract(digests)
                self._pinned += Counter()  # drops entries that reached zero

    def _remove_unused(self, digests: list[str]) -> None:
        still_used = self._referenced_digests() | set(self._pinned)
        for digest in digests:
            if digest not in still_used:
                self.blob_path(digest).unlink(missing_ok=True)

    def read_layer_text(self, stored: StoredModel, media_type: str) -> str | None:
        for layer in stored.layers:
            if layer.get("mediaType") == media_type:
                try:
                    return self.blob_path(layer["digest"]).read_text(encoding="utf-8")
                except (OSError, StoreError):
                    return None
        return None

    def _config(self, manifest: dict) -> dict:
        digest = (manifest.get("config") or {}).get("digest")
        if not digest:
            return {}
        try:
            return json.loads(self.blob_path(digest).read_bytes())
        except (OSError, ValueError, StoreError):
            return {}

    def _referenced_digests(self) -> set[str]:
        digests: set[str] = set()
        for stored in self.list():
            digests.update(self._digests_of(stored.manifest))
        return digests

    @staticmethod
    def _digests_of(manifest: dict) -> list[str]:
        entries = [*(manifest.get("layers") or []), manifest.get("config") or {}]
        return [entry["digest"] for entry in entries if DIGEST.match(str(entry.get("digest", "")))]

    def _remove_empty_dirs(self, directory: Path) -> None:
        while directory != self.manifests_dir and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent
