"""The artifact tree builder and the static artifact/registry server."""

from __future__ import annotations

import hashlib
import json
import tarfile
import urllib.error
import urllib.request

import pytest
from lab.artifacts.build import build_artifact_tree
from lab.artifacts.models import MODELS

REGISTRY_MEDIA = {
    "application/vnd.ollama.image.model",
    "application/vnd.ollama.image.template",
    "application/vnd.ollama.image.params",
    "application/vnd.ollama.image.license",
}


def files_of(tree) -> dict[str, bytes]:
    return {str(path.relative_to(tree)): path.read_bytes() for path in sorted(tree.rglob("*")) if path.is_file()}


def fetch(url: str, method: str = "GET", headers: dict | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_build_is_deterministic_and_idempotent(tmp_path, artifact_tree):
    first = files_of(build_artifact_tree(tmp_path / "a", engine_versions=("0.12.5-lab", "0.12.6-lab")))
    assert first == files_of(artifact_tree)

    mtimes = {path: path.stat().st_mtime_ns for path in (tmp_path / "a").rglob("*") if path.is_file()}
    build_artifact_tree(tmp_path / "a", engine_versions=("0.12.5-lab", "0.12.6-lab"))
    assert mtimes == {path: path.stat().st_mtime_ns for path in (tmp_path / "a").rglob("*") if path.is_file()}


def test_registry_layout_and_real_digests(artifact_tree):
    for spec in MODELS:
        repository = artifact_tree / "v2/library" / spec.model
        manifest = json.loads((repository / "manifests" / spec.tag).read_bytes())
        assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert {layer["mediaType"] for layer in manifest["layers"]} <= REGISTRY_MEDIA
        assert manifest["layers"][0]["mediaType"] == "application/vnd.ollama.image.model"
        for entry in [*manifest["layers"], manifest["config"]]:
            data = (repository / "blobs" / entry["digest"]).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == entry["digest"]
            assert len(data) == entry["size"]
        config = json.loads((repository / "blobs" / manifest["config"]["digest"]).read_bytes())
        assert config["lab"] == spec.lab


def test_model_versions_have_different_weights(artifact_tree):
    def weights(tag: str) -> str:
        manifest = json.loads((artifact_tree / "v2/library/lab-chat/manifests" / tag).read_bytes())
        return manifest["layers"][0]["digest"]

    assert len({weights("v1"), weights("v2"), weights("bad")}) == 3


def test_weights_scale_makes_bigger_models(tmp_path):
    tree = build_artifact_tree(tmp_path / "big", models=MODELS[:1], weights_scale=2.0)
    manifest = json.loads((tree / "v2/library/lab-chat/manifests/v1").read_bytes())
    assert manifest["layers"][0]["size"] == 2 * MODELS[0].weights_bytes


def test_each_release_carries_its_version_and_checksum(artifact_tree):
    for version in ("0.12.5-lab", "0.12.6-lab"):
        directory = artifact_tree / "releases" / f"v{version}"
        archive = (directory / "ollama-linux-amd64.tgz").read_bytes()
        assert (directory / "sha256sum.txt").read_text() == (
            f"{hashlib.sha256(archive).hexdigest()}  ./ollama-linux-amd64.tgz\n"
        )
        with tarfile.open(directory / "ollama-linux-amd64.tgz") as tar:
            names = tar.getnames()
            version_file = tar.extractfile("lib/ollama/python/lab/engine/version.py").read().decode()
        assert "bin/ollama" in names
        assert f"VERSION = {version!r}" in version_file
    default = (artifact_tree / "releases/ollama-linux-amd64.tgz").read_bytes()
    assert default == (artifact_tree / "releases/v0.12.6-lab/ollama-linux-amd64.tgz").read_bytes()


def test_server_serves_manifests_with_registry_headers(artifact_server, artifact_tree):
    status, headers, body = fetch(artifact_server.url + "/v2/library/lab-chat/manifests/v1")
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert body == (artifact_tree / "v2/library/lab-chat/manifests/v1").read_bytes()
    assert fetch(artifact_server.url + "/v2/")[0] == 200


def test_server_head_and_ranges(artifact_server, artifact_tree):
    path = "/releases/ollama-linux-amd64.tgz"
    data = (artifact_tree / path.lstrip("/")).read_bytes()

    status, headers, body = fetch(artifact_server.url + path, method="HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) == len(data)
    assert headers["Accept-Ranges"] == "bytes"

    status, headers, body = fetch(artifact_server.url + path, headers={"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"

    assert fetch(artifact_server.url + path, headers={"Range": "bytes=-5"})[2] == data[-5:]
    assert fetch(artifact_server.url + path, headers={"Range": "bytes=100-"})[2] == data[100:]
    assert fetch(artifact_server.url + path, headers={"Range": f"bytes={len(data)}-"})[0] == 416


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/library/lab-chat/manifests/v99", "MANIFEST_UNKNOWN"),
        ("/v2/library/lab-chat/blobs/sha256:" + "0" * 64, "BLOB_UNKNOWN"),
        ("/v2/library/nothing/manifests/latest", "NAME_UNKNOWN"),
        ("/releases/../../../etc/passwd", "NOT_FOUND"),
        ("/releases", "NOT_FOUND"),
    ],
)
def test_server_404s_are_registry_errors(artifact_server, path, code):
    status, headers, body = fetch(artifact_server.url + path)
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["errors"][0]["code"] == code


def test_server_logs_every_request(artifact_server, wait_until):
    before = len(artifact_server.requests)
    fetch(artifact_server.url + "/releases/sha256sum.txt", headers={"Range": "bytes=0-3"})

    def logged() -> list[dict]:  # requests are logged just after their answer goes out
        return [entry for entry in artifact_server.requests[before:] if entry.get("path") == "/releases/sha256sum.txt"]

    (entry,) = wait_until(logged)
    assert entry["method"] == "GET"
    assert entry["path"] == "/releases/sha256sum.txt"
    assert entry["status"] == 206
    assert entry["bytes"] == 4
    assert entry["range"] == "bytes=0-3"
