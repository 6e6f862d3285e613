"""ollama_info against an Ollama-shaped server on loopback, and against the ways it can fail."""

from __future__ import annotations

import pytest
from loopback import free_port, hang_answer, json_answer, raw_answer

from ansible_collections.namtech.internal_ai.plugins.module_utils import api_module
from ansible_collections.namtech.internal_ai.plugins.modules import ollama_info

DIGEST_V1 = "4f3b2a1c" * 8
TAGS = {"models": [{
    "name": "lab-chat:v1", "model": "lab-chat:v1", "modified_at": "2026-11-27T07:00:00.123456789Z",
    "size": 4194816, "digest": DIGEST_V1,
    "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": "1.4M", "quantization_level": "Q8_0"},
}]}
PS = {"models": [{
    "name": "lab-chat:v1", "model": "lab-chat:v1", "size": 6000000, "digest": DIGEST_V1,
    "details": TAGS["models"][0]["details"], "expires_at": "2026-11-27T07:05:00Z", "size_vram": 1500000,
    "context_length": 4096,
}]}


@pytest.fixture
def ollama(server):
    server.route("GET", "/api/version", json_answer({"version": "0.12.6"}))
    server.route("GET", "/api/tags", json_answer(TAGS))
    server.route("GET", "/api/ps", json_answer(PS))
    return server


def test_reads_version_models_and_loaded_models(ollama, run_module):
    result = run_module(ollama_info, {"url": ollama.url})
    assert result["exit_code"] == 0
    assert result["changed"] is False
    assert result["version"] == "0.12.6"
    assert result["models"] == [{
        "name": "lab-chat:v1", "model": "lab-chat:v1", "digest": DIGEST_V1, "size": 4194816,
        "modified_at": "2026-11-27T07:00:00.123456789Z",
        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                    "parameter_size": "1.4M", "quantization_level": "Q8_0"},
    }]
    assert result["loaded"] == [{
        "name": "lab-chat:v1", "model": "lab-chat:v1", "digest": DIGEST_V1, "size": 6000000,
        "size_vram": 1500000, "processor": "75%/25% CPU/GPU", "expires_at": "2026-11-27T07:05:00Z",
        "context_length": 4096,
    }]


def test_gather_asks_only_for_what_is_wanted(ollama, run_module):
    result = run_module(ollama_info, {"url": ollama.url, "gather": ["loaded"]})
    assert "version" not in result and "models" not in result
    assert [request["path"] for request in ollama.requests] == ["/api/ps"]


def test_check_mode_reads_as_usual(ollama, run_module):
    result = run_module(ollama_info, {"url": ollama.url}, check_mode=True)
    assert result["exit_code"] == 0 and result["version"] == "0.12.6" and result["changed"] is False


def test_the_api_token_is_sent_and_never_returned(ollama, run_module):
    result = run_module(ollama_info, {"url": ollama.url, "api_token": "tok-123", "gather": ["version"]})
    assert ollama.requests[0]["headers"]["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(result)


def test_unreachable_engine(run_module):
    url = "http://127.0.0.1:%d" % free_port()
    result = run_module(ollama_info, {"url": url, "retries": 0})
    assert result["exit_code"] == 1 and result["failed"] is True
    assert result["msg"].startswith("GET %s/api/version: cannot connect (" % url)
    assert result["msg"].endswith(") after 1 attempt. Check that the service runs and listens on this address and "
                                  "that no firewall blocks it")
    assert (result["url"], result["request_url"]) == (url, url + "/api/version")


def test_engine_error_status_names_the_server_error(server, run_module):
    server.route("GET", "/api/version", json_answer({"version": "0.12.6"}))
    server.route("GET", "/api/tags", json_answer({"error": "open /models/manifests: permission denied"}, 500))
    result = run_module(ollama_info, {"url": server.url})
    assert result["exit_code"] == 1
    assert result["msg"] == "GET %s/api/tags returned HTTP 500: open /models/manifests: permission denied" % server.url
    assert (result["status"], result["server_error"]) == (500, "open /models/manifests: permission denied")


def test_a_proxy_page_instead_of_the_api(server, run_module):
    server.route("GET", "/api/version", raw_answer("<!DOCTYPE html><title>Sign in</title>", content_type="text/html"))
    result = run_module(ollama_info, {"url": server.url})
    assert result["exit_code"] == 1
    assert result["msg"].startswith("GET %s/api/version returned HTML (content-type text/html)" % server.url)


@pytest.mark.parametrize(("tags", "message"), [
    ({"tags": []}, "the answer has no 'models' field"),
    ({"models": {"name": "x"}}, "field 'models' should be list, got {'name': 'x'}"),
    ({"models": [{"name": "x", "digest": "d", "size": "big"}]}, "field 'size' should be int, got 'big'"),
    ({"models": [{"name": "x", "size": 1}]}, "the answer has no 'digest' field"),
    ({"models": ["x"]}, "expected a JSON object, got str"),
])
def test_malformed_answers_name_the_field(server, run_module, tags, message):
    server.route("GET", "/api/tags", json_answer(tags))
    result = run_module(ollama_info, {"url": server.url, "gather": ["models"]})
    assert result["exit_code"] == 1
    assert result["msg"] == "GET %s/api/tags: %s" % (server.url, message)


def test_a_hung_engine_times_out(server, run_module):
    server.route("GET", "/api/version", hang_answer)
    result = run_module(ollama_info, {"url": server.url, "timeout": 0.5})
    assert result["exit_code"] == 1
    assert result["msg"].startswith("GET %s/api/version: no answer within the read timeout of 0.5s." % server.url)


@pytest.mark.parametrize(("args", "message"), [
    ({"url": "localhost:11434"}, "url must start with http:// or https:// (got 'localhost:11434'), for example "
                                 "http://10.0.0.5:11434"),
    ({"timeout": 0}, "timeout must be a positive number of seconds (got 0.0)"),
    ({"retries": -1}, "retries must be between 0 and 10 (got -1)"),
    ({"gather": ["everything"]}, "value of gather must be one or more of: version, models, loaded. "
                                 "Got no match for: everything"),
    ({"timeout": "soon"}, "argument 'timeout' is of type str and we were unable to convert to float: "),
    ({"api_token": "tok-42", "url_username": "ops"}, "parameters are mutually exclusive: api_token|url_username"),
    ({"url_password": "pw-42"}, "missing parameter(s) required by 'url_password': url_username"),
])
def test_bad_arguments_fail_clearly(run_module, args, message):
    result = run_module(ollama_info, args)
    assert result["exit_code"] == 1
    assert result["msg"].startswith(message)


def test_missing_httpx_is_reported_as_a_missing_library(run_module, monkeypatch):
    monkeypatch.setattr(api_module, "HAS_HTTPX", False)
    result = run_module(ollama_info, {})
    assert result["exit_code"] == 1
    assert result["msg"].startswith("Failed to import the required Python library (httpx)")
