"""openai_info against vLLM-shaped and Ollama-shaped OpenAI-compatible servers on loopback."""

from __future__ import annotations

import math

import pytest
from loopback import free_port, json_answer, raw_answer

from ansible_collections.namtech.internal_ai.plugins.module_utils.prometheus_text import (
    MetricsParseError,
    parse_samples,
    select_families,
)
from ansible_collections.namtech.internal_ai.plugins.modules import openai_info

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="assistant"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="assistant"} 0.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="assistant"} 5120.0
vllm:generation_tokens_created{engine="0",model_name="assistant"} 1.7642e+09
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.01",model_name="assistant"} 7.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="assistant"} 10.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="assistant"} 10.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="assistant"} 0.135
"""
MODELS = {"object": "list", "data": [{
    "id": "assistant", "object": "model", "created": 1764226800, "owned_by": "vllm",
    "root": "/srv/models/tiny-chat-v1", "parent": None, "max_model_len": 1024, "permission": [{}],
}]}


@pytest.fixture
def vllm(server):
    server.route("GET", "/health", raw_answer("", content_type="text/plain"))
    server.route("GET", "/version", json_answer({"version": "0.32.0"}))
    server.route("GET", "/v1/models", json_answer(MODELS))
    server.route("GET", "/metrics", raw_answer(VLLM_METRICS, content_type="text/plain; version=0.0.4"))
    return server


def test_reads_health_version_models_and_metrics_of_vllm(vllm, run_module):
    result = run_module(openai_info, {"url": vllm.url, "metrics": [
        "vllm:num_requests_running", "vllm:generation_tokens", "vllm:time_to_first_token_seconds", "vllm:absent"]})
    assert result["exit_code"] == 0 and result["changed"] is False
    assert (result["health_status"], result["healthy"], result["version"]) == (200, True, "0.32.0")
    assert result["models"] == [{"id": "assistant", "object": "model", "created": 1764226800, "owned_by": "vllm",
                                 "root": "/srv/models/tiny-chat-v1", "parent": None, "max_model_len": 1024}]
    metrics = result["metrics"]
    assert metrics["vllm:num_requests_running"] == [
        {"name": "vllm:num_requests_running", "labels": {"engine": "0", "model_name": "assistant"}, "value": 2.0}]
    assert [sample["name"] for sample in metrics["vllm:generation_tokens"]] == ["vllm:generation_tokens_total"]
    assert sorted(sample["name"] for sample in metrics["vllm:time_to_first_token_seconds"]) == [
        "vllm:time_to_first_token_seconds_count", "vllm:time_to_first_token_seconds_sum"]
    assert metrics["vllm:absent"] == []
    assert result["missing_endpoints"] == []


def test_api_key_reaches_v1_and_is_not_returned(vllm, run_module):
    result = run_module(openai_info, {"url": vllm.url, "api_key": "vllm-key-7", "gather": ["models"]})
    assert vllm.requests[0]["headers"]["Authorization"] == "Bearer vllm-key-7"
    assert "vllm-key-7" not in repr(result)


def test_an_unhealthy_engine_is_reported_not_failed(vllm, run_module):
    vllm.route("GET", "/health", raw_answer("", 503, "text/plain"))
    result = run_module(openai_info, {"url": vllm.url, "gather": ["health"]})
    assert result["exit_code"] == 0
    assert (result["health_status"], result["healthy"]) == (503, False)


def test_ollama_v1_routes_without_vllm_endpoints(server, run_module):
    server.route("GET", "/v1/models", json_answer({"object": "list", "data": [
        {"id": "assistant:latest", "object": "model", "created": 1764226800, "owned_by": "library"}]}))
    result = run_module(openai_info, {"url": server.url})
    assert result["exit_code"] == 0
    assert (result["health_status"], result["healthy"], result["version"], result["metrics"]) == (
        None, False, None, None)
    assert result["missing_endpoints"] == ["/health", "/version", "/metrics"]
    assert [model["id"] for model in result["models"]] == ["assistant:latest"]


def test_a_url_ending_in_v1_is_refused_with_the_fix(run_module):
    result = run_module(openai_info, {"url": "http://10.0.0.5:8000/v1/"})
    assert result["exit_code"] == 1
    assert result["msg"] == "url must be the server root without /v1 (got http://10.0.0.5:8000/v1/); try " \
                            "http://10.0.0.5:8000"


def test_models_without_ids_are_malformed(server, run_module):
    server.route("GET", "/v1/models", json_answer({"data": [{"object": "model"}]}))
    result = run_module(openai_info, {"url": server.url, "gather": ["models"]})
    assert result["exit_code"] == 1
    assert result["msg"] == "GET %s/v1/models: the answer has no 'id' field" % server.url


def test_metrics_that_are_not_prometheus_text(server, run_module):
    server.route("GET", "/metrics", raw_answer("vllm:num_requests_running{engine=\"0\" 2\n", content_type="text/plain"))
    result = run_module(openai_info, {"url": server.url, "gather": ["metrics"]})
    assert result["exit_code"] == 1
    assert result["msg"] == ("GET %s/metrics is not in the Prometheus text format: line 1: label without a quoted "
                             "value: 'vllm:num_requests_running{engine=\"0\" 2'" % server.url)


def test_unauthorised_models_request_fails_with_the_servers_message(server, run_module):
    server.route("GET", "/v1/models", json_answer({"error": "Unauthorized"}, 401))
    result = run_module(openai_info, {"url": server.url, "gather": ["models"]})
    assert result["exit_code"] == 1
    assert result["msg"] == "GET %s/v1/models returned HTTP 401: Unauthorized" % server.url


def test_unreachable_server(run_module):
    url = "http://127.0.0.1:%d" % free_port()
    result = run_module(openai_info, {"url": url, "retries": 1, "connect_timeout": 1})
    assert result["exit_code"] == 1
    assert "cannot connect" in result["msg"] and "after 2 attempts" in result["msg"]


def test_prometheus_text_parser_handles_escapes_and_special_values():
    samples = parse_samples('a_total{path="/v1/x",msg="say \\"hi\\"\\nthen, go",le="+Inf"} +Inf 1700000000\n'
                            "b NaN\nc{} -1.5e3\n")
    assert samples[0] == {"name": "a_total", "labels": {"path": "/v1/x", "msg": 'say "hi"\nthen, go', "le": "+Inf"},
                          "value": math.inf}
    assert math.isnan(samples[1]["value"])
    assert samples[2] == {"name": "c", "labels": {}, "value": -1500.0}
    assert select_families(samples, ["a", "c"]) == {"a": [samples[0]], "c": [samples[2]]}


@pytest.mark.parametrize("line", ['x{a="1"', 'x{a=1} 2', "x", "x abc", '{a="1"} 1'])
def test_prometheus_text_parser_rejects_broken_lines(line):
    with pytest.raises(MetricsParseError):
        parse_samples(line)
