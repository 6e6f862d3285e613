from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess

import httpx
import pytest
from ansible.module_utils.testing import patch_module_args
from lab.artifacts.build import build_artifact_tree
from lab.artifacts.server import ArtifactServer
from lab.engine.core import Engine, EngineConfig
from lab.engine.faults import Faults
from lab.engine.server import EngineServer
from loopback import LoopbackServer

LAB_ENGINE_VERSIONS = ("0.12.5-lab", "0.12.6-lab")
LAB_CHAT_MODELS = ("lab-chat:v1", "lab-chat:v2", "lab-chat:bad")


@pytest.fixture
def server():
    """A scripted HTTP server on loopback, stopped after the test."""
    started = LoopbackServer().start()
    yield started
    started.stop()


@pytest.fixture
def run_module():
    """Run a module's main() in-process with ``args``; return its JSON result and whether it failed."""

    def run(module, args, check_mode=False):
        module_args = dict(args, _ansible_check_mode=check_mode)
        output = io.StringIO()
        with patch_module_args(module_args), contextlib.redirect_stdout(output), \
                pytest.raises(SystemExit) as exit_info:
            module.main()
        result = json.loads(output.getvalue())
        result["exit_code"] = exit_info.value.code
        return result

    return run


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl command."""
    directory = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=namtech test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return directory


# -- the lab engine (the in-process stand-in for Ollama) and the registry it pulls from ----------------------------

def start_lab_engine(models_dir, registry_url, **config):
    """A lab engine serving from this process on an ephemeral loopback port; the caller stops it."""
    engine = Engine(EngineConfig(models_dir=models_dir, registry_url=registry_url, **config), Faults(),
                    on_crash=lambda: None)
    return EngineServer(engine, "127.0.0.1", 0).start()


@pytest.fixture(scope="session")
def artifact_tree(tmp_path_factory):
    """The lab's artifacts, built once: its models in a registry layout, and two releases of the lab engine."""
    return build_artifact_tree(tmp_path_factory.mktemp("artifacts") / "tree", engine_versions=LAB_ENGINE_VERSIONS)


@pytest.fixture(scope="session")
def artifact_server(artifact_tree):
    """The artifact tree served on loopback: the registry lab engines pull from, and the engine downloads.

    One for the session: a test that counts its ``requests`` counts those made after it started.
    """
    with ArtifactServer(artifact_tree, "127.0.0.1", 0, echo=False) as server:
        yield server


@pytest.fixture(scope="session")
def digests(artifact_tree):
    """The digest of each lab-chat model as the registry serves it (the sha256 of its manifest, as Ollama shows)."""

    def manifest_digest(name):
        model, tag = name.split(":")
        return hashlib.sha256((artifact_tree / "v2" / "library" / model / "manifests" / tag).read_bytes()).hexdigest()

    return {name: manifest_digest(name) for name in LAB_CHAT_MODELS}


@pytest.fixture
def start_engine(tmp_path, artifact_server):
    """Start lab engines of this test's own (empty model stores); every one is stopped when the test ends."""
    started = []

    def start(registry_url=None, models_dir=None, **config):
        server = start_lab_engine(models_dir or tmp_path / ("models-%d" % len(started)),
                                  artifact_server.url if registry_url is None else registry_url, **config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def engine(start_engine):
    """A lab engine of this test's own, with no models yet."""
    return start_engine()


@pytest.fixture(scope="module")
def shared_chat_engine(tmp_path_factory, artifact_server):
    """One lab engine for a whole test module, with every lab-chat model pulled (pulling takes a moment).

    Only for tests that leave its models as they are; a test that injects faults (``.engine.faults``) clears them.
    """
    server = start_lab_engine(tmp_path_factory.mktemp("models"), artifact_server.url)
    try:
        # httpx, not the collection's client: pytest imports this file before pytest-ansible sets up the
        # collection loader, and a collection module imported here would break every later collection import.
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for name in LAB_CHAT_MODELS:
                client.post("/api/pull", json={"model": name, "stream": False}).raise_for_status()
        yield server
    finally:
        server.stop()
