"""Model names and OLLAMA_HOST, read the way Ollama reads them."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest
from lab.engine.core import Engine, EngineConfig, parse_ollama_host
from lab.engine.names import InvalidName, ModelName
from lab.engine.registry import PullError, RegistryConfig
from lab.engine.server import EngineServer


@pytest.mark.parametrize(
    ("text", "canonical", "display"),
    [
        ("lab-chat", "registry.ollama.ai/library/lab-chat:latest", "lab-chat:latest"),
        ("lab-chat:v1", "registry.ollama.ai/library/lab-chat:v1", "lab-chat:v1"),
        ("team/lab-chat:v1", "registry.ollama.ai/team/lab-chat:v1", "team/lab-chat:v1"),
        (
            "artifacts:8080/library/lab-chat:v1",
            "artifacts:8080/library/lab-chat:v1",
            "artifacts:8080/library/lab-chat:v1",
        ),
        ("http://10.88.0.5:8080/library/m:t", "10.88.0.5:8080/library/m:t", "10.88.0.5:8080/library/m:t"),
    ],
)
def test_parse_names(text, canonical, display):
    name = ModelName.parse(text)
    assert name.canonical == canonical
    assert name.display == display


@pytest.mark.parametrize("text", ["", "  ", "a/b/c/d", "bad name", "model:", "x@sha256:abc", "-lead:v1"])
def test_invalid_names(text):
    with pytest.raises(InvalidName):
        ModelName.parse(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("127.0.0.1", 11434)),
        ("", ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        ("0.0.0.0:8000", ("0.0.0.0", 8000)),
        (":9000", ("127.0.0.1", 9000)),
        ("http://10.0.0.1:11434", ("10.0.0.1", 11434)),
        ("http://example.com", ("example.com", 80)),
        ("https://example.com", ("example.com", 443)),
        ("[::1]:1234", ("::1", 1234)),
    ],
)
def test_parse_ollama_host(value, expected):
    assert parse_ollama_host(value) == expected


def test_default_registry_is_redirected_by_the_lab_setting_only():
    lab = RegistryConfig(default_registry_url="http://artifacts:8080/")
    assert lab.base_url(ModelName.parse("lab-chat:v1"), insecure=False) == "http://artifacts:8080"
    assert RegistryConfig().base_url(ModelName.parse("lab-chat:v1"), False) == "https://registry.ollama.ai"
    other = ModelName.parse("mirror:5000/library/lab-chat:v1")
    assert lab.base_url(other, insecure=False) == "https://mirror:5000"
    assert lab.base_url(other, insecure=True) == "http://mirror:5000"
    with pytest.raises(PullError, match="insecure protocol http"):
        lab.base_url(ModelName.parse("http://mirror:5000/library/lab-chat:v1"), insecure=False)


def ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback here")
def test_engine_listens_on_ipv6(tmp_path):
    engine = Engine(EngineConfig(models_dir=tmp_path))
    with EngineServer(engine, "::1", 0) as server:
        assert server.url.startswith("http://[::1]:")
        with urllib.request.urlopen(server.url + "/api/version", timeout=10) as response:
            assert json.load(response)["version"] == engine.config.version
