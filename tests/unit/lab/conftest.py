"""Fixtures: a built artifact tree, the artifact server and lab engines, all on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ollama
import pytest
from lab.artifacts.build import build_artifact_tree
from lab.artifacts.server import ArtifactServer
from lab.engine.core import Engine, EngineConfig
from lab.engine.faults import Faults
from lab.engine.server import EngineServer

ENGINE_VERSIONS = ("0.12.5-lab", "0.12.6-lab")


def poll_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


@pytest.fixture
def wait_until() -> Callable[..., object]:
    return poll_until


@pytest.fixture(scope="session")
def artifact_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_artifact_tree(tmp_path_factory.mktemp("artifacts") / "tree", engine_versions=ENGINE_VERSIONS)


@pytest.fixture(scope="session")
def artifact_server(artifact_tree: Path) -> Iterator[ArtifactServer]:
    with ArtifactServer(artifact_tree, "127.0.0.1", 0, echo=False) as server:
        yield server


@pytest.fixture
def start_engine(tmp_path: Path, artifact_server: ArtifactServer) -> Iterator[Callable[..., EngineServer]]:
    """Start lab engines in this process; every one is stopped when the test ends."""
    started: list[EngineServer] = []

    def start(registry_url: str | None = None, models_dir: Path | None = None, **config) -> EngineServer:
        engine = Engine(
            EngineConfig(
                models_dir=models_dir or tmp_path / f"models-{len(started)}",
                registry_url=artifact_server.url if registry_url is None else registry_url,
                **config,
            ),
            Faults(),
            on_crash=lambda: None,
        )
        server = EngineServer(engine, "127.0.0.1", 0).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def engine(start_engine: Callable[..., EngineServer]) -> EngineServer:
    return start_engine()


@pytest.fixture
def client(engine: EngineServer) -> ollama.Client:
    return ollama.Client(host=engine.url, timeout=30)


@pytest.fixture
def chat_client(client: ollama.Client) -> ollama.Client:
    """A client whose engine already has lab-chat:v1."""
    client.pull("lab-chat:v1")
    return client
