"""Pulling from the lab registry: sharing, verification, failures that leave nothing half-written."""

from __future__ import annotations

import json
import socket
import threading

import ollama
import pytest
from lab.artifacts.build import build_artifact_tree
from lab.artifacts.server import ArtifactServer

BLOBS_PATH_PART = "/v2/library/lab-chat/blobs/"


def weights_digest(tree, tag: str) -> str:
    manifest = json.loads((tree / "v2/library/lab-chat/manifests" / tag).read_bytes())
    return manifest["layers"][0]["digest"]


def leftovers(models_dir) -> list[str]:
    return sorted(path.name for path in (models_dir / "blobs").iterdir() if "partial" in path.name)


@pytest.fixture
def slow_registry(artifact_tree):
    """The same tree, served at 16 MiB/s so that concurrent pulls overlap."""
    with ArtifactServer(artifact_tree, "127.0.0.1", 0, rate_limit=16 * 1024 * 1024, echo=False) as server:
        yield server


def test_three_concurrent_pulls_share_one_download(start_engine, slow_registry, artifact_tree):
    engine = start_engine(registry_url=slow_registry.url)
    barrier = threading.Barrier(3)
    results: list[object] = []

    def pull() -> None:
        client = ollama.Client(host=engine.url, timeout=30)
        barrier.wait(timeout=10)
        try:
            results.append([part.status for part in client.pull("lab-chat:v1", stream=True)][-1])
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    threads = [threading.Thread(target=pull) for _client in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results == ["success", "success", "success"]
    digest = weights_digest(artifact_tree, "v1")
    fetched = [entry for entry in slow_registry.requests if entry.get("path", "").endswith(digest)]
    assert len(fetched) == 1
    assert [model.model for model in ollama.Client(host=engine.url, timeout=30).list().models] == ["lab-chat:v1"]


def test_pulls_one_after_another_reuse_blobs(start_engine, artifact_tree, wait_until):
    manifest = json.loads((artifact_tree / "v2/library/lab-chat/manifests/v1").read_bytes())
    expected = len(manifest["layers"]) + 1  # every layer and the config, once
    with ArtifactServer(artifact_tree, "127.0.0.1", 0, echo=False) as registry:
        client = ollama.Client(host=start_engine(registry_url=registry.url).url, timeout=30)
        for _attempt in range(3):
            assert client.pull("lab-chat:v1").status == "success"

        def blob_gets() -> list[dict]:
            return [entry for entry in registry.requests if BLOBS_PATH_PART in entry.get("path", "")]

        wait_until(lambda: len(blob_gets()) >= expected)  # the server logs just after answering
        assert len(blob_gets()) == expected
        assert len([entry for entry in registry.requests if "/manifests/" in entry.get("path", "")]) == 3
    assert len(client.list().models) == 1


def test_corrupted_blob_fails_the_pull_and_leaves_nothing(tmp_path, start_engine):
    tree = build_artifact_tree(tmp_path / "tree")
    digest = weights_digest(tree, "v1")
    blob = tree / "v2/library/lab-chat/blobs" / digest
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    with ArtifactServer(tree, "127.0.0.1", 0) as registry:
        engine = start_engine(registry_url=registry.url)
        client = ollama.Client(host=engine.url, timeout=30)
        with pytest.raises(ollama.ResponseError) as caught:
            list(client.pull("lab-chat:v1", stream=True))
        assert "digest mismatch" in caught.value.error
        assert digest in caught.value.error

        with pytest.raises(ollama.ResponseError) as caught:
            client.pull("lab-chat:v1", stream=False)
        assert caught.value.status_code == 500
        assert "digest mismatch" in caught.value.error

    models_dir = engine.engine.config.models_dir
    assert client.list().models == []
    assert not (models_dir / "manifests/registry.ollama.ai/library/lab-chat/v1").exists()
    assert not (models_dir / "blobs" / digest.replace(":", "-")).exists()
    assert leftovers(models_dir) == []


def test_unreachable_registry_is_a_clear_error(start_engine):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    engine = start_engine(registry_url=f"http://127.0.0.1:{closed_port}")
    client = ollama.Client(host=engine.url, timeout=30)

    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("lab-chat:v1", stream=False)
    assert caught.value.status_code == 500
    assert caught.value.error.startswith("pull model manifest:")
    assert "refused" in caught.value.error.lower()

    with pytest.raises(ollama.ResponseError) as caught:
        list(client.pull("lab-chat:v1", stream=True))
    assert caught.value.error.startswith("pull model manifest:")


def test_unknown_tag_is_file_does_not_exist(client):
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("lab-chat:v99", stream=False)
    assert caught.value.error == "pull model manifest: file does not exist"


def test_invalid_name_is_rejected_before_streaming(client):
    with pytest.raises(ollama.ResponseError) as caught:
        list(client.pull("a/b/c/d/e", stream=True))
    assert caught.value.status_code == 400


def test_other_http_registry_needs_insecure(engine, artifact_server):
    client = ollama.Client(host=engine.url, timeout=30)
    hostport = artifact_server.url.removeprefix("http://")
    name = f"{hostport}/library/lab-chat:v2"

    with pytest.raises(ollama.ResponseError):
        client.pull(f"http://{name}", stream=False)

    assert client.pull(name, insecure=True).status == "success"
    assert [model.model for model in client.list().models] == [name]
    host_dir = engine.engine.config.models_dir / "manifests" / hostport
    assert (host_dir / "library/lab-chat/v2").is_file()


def test_blob_missing_on_the_registry_fails_the_pull(tmp_path, start_engine):
    tree = build_artifact_tree(tmp_path / "tree")
    (tree / "v2/library/lab-chat/blobs" / weights_digest(tree, "v1")).unlink()
    with ArtifactServer(tree, "127.0.0.1", 0) as registry:
        engine = start_engine(registry_url=registry.url)
        client = ollama.Client(host=engine.url, timeout=30)
        with pytest.raises(ollama.ResponseError) as caught:
            client.pull("lab-chat:v1", stream=False)
    assert "404" in caught.value.error
    models_dir = engine.engine.config.models_dir
    assert leftovers(models_dir) == []
    assert not any((models_dir / "manifests").rglob("v1"))


def test_interrupted_transfer_leaves_no_partial_blob(artifact_tree, start_engine):
    digest = weights_digest(artifact_tree, "v1")
    with ArtifactServer(artifact_tree, "127.0.0.1", 0) as registry:
        send_whole = registry.httpd.RequestHandlerClass._copy

        def send_half_then_drop(handler, file, offset, length):
            if file.name != digest:
                return send_whole(handler, file, offset, length)
            with open(file, "rb") as source:
                source.seek(offset)
                handler.wfile.write(source.read(length // 2))
            handler.close_connection = True
            return length // 2

        registry.httpd.RequestHandlerClass._copy = send_half_then_drop
        engine = start_engine(registry_url=registry.url)
        client = ollama.Client(host=engine.url, timeout=30)
        with pytest.raises(ollama.ResponseError) as caught:
            list(client.pull("lab-chat:v1", stream=True))
    assert caught.value.error.startswith("download sha256:")
    models_dir = engine.engine.config.models_dir
    assert leftovers(models_dir) == []
    assert list((models_dir / "blobs").iterdir()) == []
    assert not any((models_dir / "manifests").rglob("v1"))
