"""Fixtures of the lab tests: waiting on a condition, and Ollama clients of the engine.

The artifact tree, its server and the lab engines come from tests/unit/conftest.py, on 127.0.0.1 with ephemeral ports.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ollama
import pytest
from lab.engine.server import EngineServer


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


@pytest.fixture
def client(engine: EngineServer) -> ollama.Client:
    return ollama.Client(host=engine.url, timeout=30)


@pytest.fixture
def chat_client(client: ollama.Client) -> ollama.Client:
    """A client whose engine already has lab-chat:v1."""
    client.pull("lab-chat:v1")
    return client
