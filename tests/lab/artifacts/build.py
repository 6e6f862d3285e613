"""Build the lab's artifact tree: a static model registry and Ollama-style release archives of the lab engine.

Layout of the tree (served as-is by ``server.py``)::

    v2/library/<model>/manifests/<tag>
    v2/library/<model>/blobs/sha256:<hex>
    releases/ollama-linux-amd64.tgz          the default engine version
    releases/sha256sum.txt
    releases/v<version>/ollama-linux-amd64.tgz
    releases/v<version>/sha256sum.txt

Everything is deterministic: the same arguments give byte-identical files, and files already right are left alone.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .models import MODELS, ModelSpec

ENGINE_DIR = Path(__file__).resolve().parent.parent / "engine"
DEFAULT_ENGINE_VERSIONS = ("0.12.6-lab",)
ARCHIVE_NAME = "ollama-linux-amd64.tgz"

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"

LAUNCHER = '''#!/usr/bin/python3
"""Lab engine launcher: a test stand-in for Ollama, never for production (see docs/lab-engine.md)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, "lib", "ollama", "python"))
from lab.engine.cli import main  # noqa: E402

sys.exit(main())
'''


def build_artifact_tree(
    dest: Path,
    engine_versions: Iterable[str] = DEFAULT_ENGINE_VERSIONS,
    models: Iterable[ModelSpec] = MODELS,
    weights_scale: float = 1.0,
) -> Path:
    """Write the registry and the release archives under ``dest`` and return ``dest``.

    ``weights_scale`` multiplies every model's weights size (benchmarks want bigger transfers).
    The last of ``engine_versions`` is also published as the default ``releases/ollama-linux-amd64.tgz``.
    """
    dest = Path(dest)
    versions = tuple(engine_versions)
    if not versions:
        raise ValueError("engine_versions must name at least one version")
    for spec in models:
        write_model(dest, spec, weights_scale)
    for version in versions:
        write_release(dest / "releases" / f"v{version}", release_archive(version))
    write_release(dest / "releases", release_archive(versions[-1]))
    return dest


# --- registry -----------------------------------------------------------------------------------------------


def write_model(dest: Path, spec: ModelSpec, weights_scale: float = 1.0) -> str:
    """Write one model's blobs and manifest; return the manifest's digest."""
    repository = dest / "v2" / "library" / spec.model
    layers = [
        _layer(MEDIA_MODEL, weights(spec, int(spec.weights_bytes * weights_scale))),
        *([_layer(MEDIA_TEMPLATE, spec.template.encode())] if spec.template else []),
        *([_layer(MEDIA_PARAMS, json.dumps(spec.params).encode())] if spec.params else []),
        _layer(MEDIA_LICENSE, spec.license.encode()),
    ]
    config = _layer(MEDIA_CONFIG, config_blob(spec, [digest for _media, digest, _data in layers]))
    for _media, digest, data in [*layers, config]:
        write_if_changed(repository / "blobs" / digest, data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": _descriptor(config),
        "layers": [_descriptor(layer) for layer in layers],
    }
    raw = json.dumps(manifest, indent=2).encode()
    write_if_changed(repository / "manifests" / spec.tag, raw)
    return _digest(raw)


def weights(spec: ModelSpec, size: int) -> bytes:
    """Pseudo-random bytes behind a GGUF magic, different for every model version."""
    header = b"GGUF" + (3).to_bytes(4, "little")
    body = hashlib.shake_256(f"lab-weights:{spec.name}".encode()).digest(max(0, size - len(header)))
    return (header + body)[:size]


def config_blob(spec: ModelSpec, diff_ids: list[str]) -> bytes:
    config = {
        "model_format": "gguf",
        "model_family": spec.family,
        "model_families": [spec.family],
        "model_type": spec.parameter_size,
        "file_type": spec.quantization,
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "lab": spec.lab,
    }
    return json.dumps(config, sort_keys=True).encode()


def _layer(media_type: str, data: bytes) -> tuple[str, str, bytes]:
    return media_type, _digest(data), data


def _descriptor(layer: tuple[str, str, bytes]) -> dict:
    media_type, digest, data = layer
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- releases -----------------------------------------------------------------------------------------------


def release_archive(version: str) -> bytes:
    """A .tgz shaped like Ollama's Linux release: ``bin/ollama`` and ``lib/ollama/...``."""
    files: dict[str, tuple[bytes, int]] = {"bin/ollama": (LAUNCHER.encode(), 0o755)}
    package = "lib/ollama/python/lab"
    files[f"{package}/__init__.py"] = (b'"""Lab engine package (test stand-in for Ollama)."""\n', 0o644)
    for source in sorted(ENGINE_DIR.glob("*.py")):
        data = source.read_bytes()
        if source.name == "version.py":
            data = version_module(version)
        files[f"{package}/engine/{source.name}"] = (data, 0o644)
    files["lib/ollama/LAB-ENGINE.txt"] = (
        f"Lab engine {version}: a test stand-in for Ollama. Never use it in production.\n".encode(),
        0o644,
    )
    return _tgz(files)


def version_module(version: str) -> bytes:
    return (
        '"""The lab engine\'s version; build.py rewrites this file inside each release archive."""\n\n'
        f"VERSION = {version!r}\n"
    ).encode()


def _tgz(files: dict[str, tuple[bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted(_parent_dirs(files)):
            tar.addfile(_tar_info(directory, 0, 0o755, tarfile.DIRTYPE))
        for path in sorted(files):
            data, mode = files[path]
            tar.addfile(_tar_info(path, len(data), mode, tarfile.REGTYPE), io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _parent_dirs(files: Iterable[str]) -> set[str]:
    dirs = set()
    for path in files:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[: index + 1]) for index in range(len(parts)))
    return dirs


def _tar_info(name: str, size: int, mode: int, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type = size, mode, kind
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    return info


def write_release(directory: Path, archive: bytes) -> None:
    write_if_changed(directory / ARCHIVE_NAME, archive)
    checksum = f"{hashlib.sha256(archive).hexdigest()}  ./{ARCHIVE_NAME}\n"
    write_if_changed(directory / "sha256sum.txt", checksum.encode())


# --- files --------------------------------------------------------------------------------------------------


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically replace ``path`` with ``data`` unless it already holds exactly that; return whether it wrote."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
