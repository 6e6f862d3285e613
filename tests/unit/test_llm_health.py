"""llm_health against the lab engine in-process (Ollama API and its /v1 routes), a scripted vLLM and Prometheus.

Timing assertions use the lab models' own delays as lower bounds (lab-chat:v1 answers its first token after
0.03 s, lab-chat:bad after 0.25 s), never a fixed upper bound tight enough to depend on the machine's load.
"""

from __future__ import annotations

import base64
import json
import ssl
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from loopback import LoopbackServer, free_port, json_answer, raw_answer, send_raw, stream_answer

from ansible_collections.namtech.internal_ai.plugins.module_utils import health
from ansible_collections.namtech.internal_ai.plugins.module_utils.health import (
    Piece,
    evaluate_prometheus,
    failure_message,
    measure,
)
from ansible_collections.namtech.internal_ai.plugins.modules import llm_health

FAST = {"max_ttft_seconds": 5.0, "max_seconds": 20.0}
PROBE_NAMES = ["probe 1", "probe 2", "probe 3"]


# -- the lab engine (each test its own, from the engine fixture in conftest.py) --------------------

def deploy(engine, model, alias="assistant", load=True):
    """Pull ``model``, point ``alias`` at it and load it, as a rollout does before its gate."""
    with httpx.Client(base_url=engine.url, timeout=30) as client:
        client.post("/api/pull", json={"model": model, "stream": False}).raise_for_status()
        client.post("/api/copy", json={"source": model, "destination": alias}).raise_for_status()
        if load:
            client.post("/api/generate", json={"model": alias, "prompt": ""}).raise_for_status()


def loaded(engine):
    return [entry["name"] for entry in httpx.get(engine.url + "/api/ps", timeout=10).json()["models"]]


@pytest.fixture
def gate(run_module):
    def run(check_mode=False, **args):
        return run_module(llm_health, args, check_mode=check_mode)

    return run


def by_name(result):
    return {item["name"]: item for item in result["checks"]}


def names(result):
    return [item["name"] for item in result["checks"]]


# -- a scripted vLLM and Prometheus on loopback ---------------------------------------------------

VLLM_MODELS = {"object": "list", "data": [{"id": "assistant", "object": "model", "created": 1764226800,
                                           "owned_by": "vllm", "root": "/srv/models/chat-v1", "max_model_len": 1024}]}


def sse(payload):
    return "data: " + json.dumps(payload) + "\n"


def chat_chunk(content=None, role=None, finish=None):
    delta = dict(({"role": role} if role else {}), **({"content": content} if content is not None else {}))
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "assistant",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


VLLM_STREAM = [
    sse(chat_chunk(role="assistant", content="")),
    sse(chat_chunk(content="Ready")),
    sse(chat_chunk(content=" now.")),
    sse(chat_chunk(content="", finish="stop")),
    sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "assistant", "choices": [],
         "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}),
    "data: [DONE]\n",
]


@pytest.fixture
def vllm(server):
    server.route("GET", "/health", raw_answer("", content_type="text/plain"))
    server.route("GET", "/version", json_answer({"version": "0.32.0"}))
    server.route("GET", "/v1/models", json_answer(VLLM_MODELS))
    server.route("POST", "/v1/chat/completions", stream_answer(VLLM_STREAM, content_type="text/event-stream"))
    return server


def prometheus_vector(*values):
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": "node1"}, "value": [1767225600.123, value]} for value in values]}}


def queries(server):
    return [parse_qs(urlsplit(request["path"]).query)["query"][0] for request in server.requests
            if request["path"].startswith("/api/v1/query")]


# -- Ollama ---------------------------------------------------------------------------------------

def test_a_healthy_node_passes_with_every_figure(engine, gate, digests, server):
    deploy(engine, "lab-chat:v1")
    server.route("GET", "/api/v1/query", json_answer(prometheus_vector("0.01")))
    result = gate(url=engine.url, model="assistant", expected_digest="sha256:" + digests["lab-chat:v1"],
                  max_tokens=8, prometheus_url=server.url,
                  prometheus_checks=[{"name": "error_ratio", "query": 'job:errors:ratio5m{instance="node1"}',
                                      "op": "<", "value": 0.05}], **FAST)
    assert (result["exit_code"], result["changed"], result["passed"], result["failed_checks"]) == (0, False, True, [])
    assert names(result) == ["engine", "digest", "loaded", *PROBE_NAMES, "prometheus error_ratio"]
    checks = by_name(result)
    assert checks["engine"] == {"name": "engine", "passed": True, "value": "0.12.6-lab", "expected": None,
                                "detail": "Ollama 0.12.6-lab answers at %s" % engine.url}
    assert checks["digest"] == {"name": "digest", "passed": True, "value": digests["lab-chat:v1"],
                                "expected": digests["lab-chat:v1"],
                                "detail": "assistant:latest has digest %s as expected" % digests["lab-chat:v1"]}
    assert (checks["loaded"]["passed"], checks["loaded"]["value"]) == (True, True)
    assert checks["loaded"]["detail"].startswith("loaded as assistant:latest (100% CPU, until ")
    for name in PROBE_NAMES:
        figures = checks[name]["value"]
        assert checks[name]["passed"] is True and checks[name]["expected"] == {"max_ttft_seconds": 5.0,
                                                                               "max_seconds": 20.0}
        assert figures["tokens"] == 8
        assert 0.03 <= figures["ttft_seconds"] < figures["seconds"] < 20
        assert figures["tokens_per_second"] > 0
        assert checks[name]["detail"] == "first token after %s s, 8 tokens in %s s (%s tokens/s)" % (
            figures["ttft_seconds"], figures["seconds"], figures["tokens_per_second"])
    assert checks["prometheus error_ratio"] == {"name": "prometheus error_ratio", "passed": True, "value": 0.01,
                                                "expected": "< 0.05", "detail": "0.01 < 0.05"}
    assert queries(server) == ['job:errors:ratio5m{instance="node1"}']


def test_a_wrong_digest_fails_with_both_digests(engine, gate, digests):
    deploy(engine, "lab-chat:v1")
    result = gate(url=engine.url, model="assistant", expected_digest=digests["lab-chat:v2"], probes=1, **FAST)
    assert (result["exit_code"], result["passed"], result["failed_checks"]) == (1, False, ["digest"])
    detail = ("assistant:latest has digest %s, expected %s: the name points at another version than the one "
              "deployed" % (digests["lab-chat:v1"], digests["lab-chat:v2"]))
    assert by_name(result)["digest"] == {"name": "digest", "passed": False, "value": digests["lab-chat:v1"],
                                         "expected": digests["lab-chat:v2"], "detail": detail}
    assert result["msg"] == "health gate failed for assistant at %s (1 of 4 checks failed): digest: %s" % (
        engine.url, detail)
    assert by_name(result)["probe 1"]["passed"] is True


def test_a_model_that_is_not_loaded_fails_before_a_probe_loads_it(engine, gate, digests):
    deploy(engine, "lab-chat:v1", load=False)
    result = gate(url=engine.url, model="assistant", expected_digest=digests["lab-chat:v1"], probes=1, **FAST)
    assert (result["exit_code"], result["failed_checks"]) == (1, ["loaded"])
    assert by_name(result)["loaded"] == {
        "name": "loaded", "passed": False, "value": False, "expected": True,
        "detail": "assistant:latest is not loaded; /api/ps lists nothing. Load it before the gate (ollama_model "
                  "warm=true) or set require_loaded=false"}
    assert loaded(engine) == ["assistant:latest"]  # the probe loaded it, after the check
    again = gate(url=engine.url, model="assistant", probes=0)
    assert (again["exit_code"], by_name(again)["loaded"]["detail"].startswith("loaded as assistant:latest (")) == (
        0, True)


def test_require_loaded_false_and_warmup_gate_a_cold_model(engine, gate):
    deploy(engine, "lab-chat:v1", load=False)
    result = gate(url=engine.url, model="assistant", require_loaded=False, warmup=True, probes=1, **FAST)
    assert (result["exit_code"], names(result)) == (0, ["engine", "digest", "warmup", "probe 1"])
    warmup = by_name(result)["warmup"]
    assert warmup["passed"] is True and warmup["detail"] == "untimed warm-up answered in %s s" % (
        warmup["value"]["seconds"])
    assert warmup["value"]["seconds"] >= 0.3  # lab-chat:v1 takes 0.3 s to load


def test_a_missing_model_fails_and_lists_what_the_server_has(engine, gate):
    deploy(engine, "lab-chat:v1")
    result = gate(url=engine.url, model="chatbot", probes=1, **FAST)
    checks = by_name(result)
    assert result["exit_code"] == 1 and result["failed_checks"] == ["digest", "loaded", "probe 1"]
    assert checks["digest"]["detail"] == ("chatbot:latest is not on the server; /api/tags lists assistant:latest, "
                                          "lab-chat:v1. Pull or copy it first (ollama_model)")
    assert checks["probe 1"]["detail"] == ("POST %s/api/chat returned HTTP 404: model 'chatbot' not found"
                                           % engine.url)


@pytest.mark.parametrize("engine_type", ["ollama", "openai"])
def test_a_slow_model_fails_max_ttft_seconds(engine, gate, engine_type):
    deploy(engine, "lab-chat:bad")
    model = "assistant" if engine_type == "ollama" else "assistant:latest"
    result = gate(url=engine.url, engine=engine_type, model=model, probes=2, max_tokens=4, max_ttft_seconds=0.2)
    assert (result["exit_code"], result["failed_checks"]) == (1, ["probe 1", "probe 2"])
    for name in ("probe 1", "probe 2"):
        probe = by_name(result)[name]
        ttft = probe["value"]["ttft_seconds"]
        assert ttft >= 0.25 and probe["expected"] == {"max_ttft_seconds": 0.2, "max_seconds": None}
        assert probe["detail"].startswith("first token after %s s, more than max_ttft_seconds=0.2 (first token "
                                          "after %s s, 4 tokens in " % (ttft, ttft))
    assert result["msg"].startswith("health gate failed for %s at %s (2 of " % (model, engine.url))


def test_a_probe_slower_than_max_seconds_is_cut_short(engine, gate):
    deploy(engine, "lab-chat:bad")
    result = gate(url=engine.url, model="assistant", probes=1, max_tokens=64, max_seconds=0.3)
    probe = by_name(result)["probe 1"]
    assert (result["exit_code"], probe["passed"]) == (1, False)
    assert probe["detail"].startswith("no complete answer within max_seconds=0.3 (stopped reading after ")
    assert probe["value"]["seconds"] > 0.3 and probe["value"]["tokens"] < 24


def test_engine_errors_on_a_fraction_of_requests_fail_those_probes(engine, gate):
    deploy(engine, "lab-chat:v1")
    engine.engine.faults.update({"error_rate": 0.5})
    result = gate(url=engine.url, model="assistant", probes=4, max_tokens=4, **FAST)
    assert (result["exit_code"], result["failed_checks"]) == (1, ["probe 2", "probe 4"])
    error = "POST %s/api/chat returned HTTP 500: lab fault: injected inference error" % engine.url
    assert [by_name(result)[name]["detail"] for name in ("probe 2", "probe 4")] == [error, error]
    assert result["msg"] == ("health gate failed for assistant at %s (2 of 7 checks failed): probe 2: %s; probe 4: %s"
                             % (engine.url, error, error))
    assert all(by_name(result)[name]["passed"] for name in ("probe 1", "probe 3"))


def test_an_unreachable_engine_is_a_clear_failure(gate, server):
    url = "http://127.0.0.1:%d" % free_port()
    server.route("GET", "/api/v1/query", json_answer(prometheus_vector("0")))
    result = gate(url=url, model="assistant", retries=0, prometheus_url=server.url,
                  prometheus_checks=[{"name": "up", "query": "up", "op": "==", "value": 1}])
    assert (result["exit_code"], result["passed"]) == (1, False)
    assert names(result) == ["engine", "digest", "loaded", *PROBE_NAMES, "prometheus up"]
    engine_detail = by_name(result)["engine"]["detail"]
    assert engine_detail.startswith("GET %s/api/version: cannot connect (" % url)
    assert engine_detail.endswith(") after 1 attempt. Check that the service runs and listens on this address and "
                                  "that no firewall blocks it")
    assert by_name(result)["probe 3"] == {"name": "probe 3", "passed": False, "value": None,
                                          "expected": {"max_ttft_seconds": None, "max_seconds": None},
                                          "detail": "not run: the engine check failed"}
    assert by_name(result)["loaded"]["expected"] is True
    assert by_name(result)["prometheus up"]["detail"] == "0 is not == 1.0"
    assert result["msg"] == ("health gate failed for assistant at %s (7 of 7 checks failed): engine: %s; prometheus "
                             "up: 0 is not == 1.0; 5 checks not run" % (url, engine_detail))


def test_a_hung_engine_times_out(engine, gate):
    engine.engine.faults.update({"hang": True})
    result = gate(url=engine.url, model="assistant", timeout=0.5, probes=1)
    assert result["exit_code"] == 1 and result["failed_checks"] == ["engine", "digest", "loaded", "probe 1"]
    assert by_name(result)["engine"]["detail"] == (
        "GET %s/api/version: no answer within the read timeout of 0.5s. The server accepted the request but did not "
        "reply: check that it is not hung or overloaded, or raise the timeout" % engine.url)


def test_check_mode_still_runs_the_gate(engine, gate, digests):
    deploy(engine, "lab-chat:v1")
    result = gate(check_mode=True, url=engine.url, model="assistant", expected_digest=digests["lab-chat:v1"],
                  probes=1, **FAST)
    assert (result["exit_code"], result["changed"], result["passed"]) == (0, False, True)
    assert by_name(result)["probe 1"]["value"]["tokens"] == 16


# -- OpenAI-compatible ----------------------------------------------------------------------------

def test_the_lab_engine_v1_routes_pass_as_an_openai_server(engine, gate):
    deploy(engine, "lab-chat:v1")
    result = gate(url=engine.url, engine="openai", model="assistant:latest", probes=2, max_tokens=5, **FAST)
    assert (result["exit_code"], names(result)) == (0, ["engine", "root", "probe 1", "probe 2"])
    checks = by_name(result)
    assert checks["engine"]["detail"] == "the server at %s answers (no /health endpoint, version unknown)" % engine.url
    assert checks["root"] == {"name": "root", "passed": True, "value": None, "expected": None,
                              "detail": "assistant:latest is served"}
    assert checks["probe 1"]["value"]["tokens"] == 5 and checks["probe 1"]["value"]["ttft_seconds"] >= 0.03


def test_vllm_passes_with_its_root_and_usage(vllm, gate):
    result = gate(url=vllm.url, engine="openai", model="assistant", expected_root="/srv/models/chat-v1", probes=1)
    assert (result["exit_code"], result["passed"]) == (0, True)
    checks = by_name(result)
    assert checks["engine"] == {"name": "engine", "passed": True, "value": "0.32.0", "expected": None,
                                "detail": "the server at %s answers (/health answers 200, version 0.32.0)" % vllm.url}
    assert checks["root"]["detail"] == "assistant is served from /srv/models/chat-v1"
    assert checks["probe 1"]["value"]["tokens"] == 3
    body = json.loads(next(request["body"] for request in vllm.requests if request["path"] == "/v1/chat/completions"))
    assert body == {"model": "assistant", "messages": [{"role": "user", "content": health.DEFAULT_PROMPT}],
                    "max_tokens": 16, "stream": True, "stream_options": {"include_usage": True}}


def test_vllm_serving_another_root_fails_with_both_paths(vllm, gate):
    result = gate(url=vllm.url, engine="openai", model="assistant", expected_root="/srv/models/chat-v2", probes=0)
    assert (result["exit_code"], result["failed_checks"]) == (1, ["root"])
    assert by_name(result)["root"] == {
        "name": "root", "passed": False, "value": "/srv/models/chat-v1", "expected": "/srv/models/chat-v2",
        "detail": "assistant is served from /srv/models/chat-v1, expected /srv/models/chat-v2: the engine runs "
                  "another model than the one deployed"}


def test_vllm_not_ready_fails_the_engine_check(vllm, gate):
    vllm.route("GET", "/health", raw_answer("", 503, "text/plain"))
    result = gate(url=vllm.url, engine="openai", model="assistant", probes=1)
    assert result["failed_checks"] == ["engine", "root", "probe 1"]
    assert by_name(result)["engine"]["detail"] == ("GET %s/health answered HTTP 503: the engine is not ready (vLLM "
                                                   "answers 200 once its model is loaded)" % vllm.url)
    assert [request["path"] for request in vllm.requests] == ["/health", "/version"]


def test_vllm_serving_another_name_lists_the_served_ones(vllm, gate):
    result = gate(url=vllm.url, engine="openai", model="chatbot", probes=0)
    assert by_name(result)["root"]["detail"] == ("chatbot is not served; /v1/models lists assistant. Check the served "
                                                 "model name (vLLM --served-model-name)")


def test_a_stream_cut_before_done_fails_the_probe(vllm, gate):
    vllm.route("POST", "/v1/chat/completions", stream_answer(VLLM_STREAM[:3], content_type="text/event-stream"))
    result = gate(url=vllm.url, engine="openai", model="assistant", probes=1)
    assert by_name(result)["probe 1"]["detail"] == (
        "POST %s/v1/chat/completions: the event stream ended after 3 events without 'data: [DONE]'; the answer is "
        "incomplete" % vllm.url)


# -- Prometheus -----------------------------------------------------------------------------------

ERROR_RATIO = {"name": "error_ratio", "query": "job:errors:ratio5m", "op": "<", "value": 0.05}


@pytest.mark.parametrize(("answer", "value", "detail"), [
    (json_answer({"status": "success", "data": {"resultType": "vector", "result": []}}), None,
     "no data: the query returned an empty result (no series matched). Check the query and that Prometheus scrapes "
     "the target; a gate without data fails"),
    (json_answer(prometheus_vector("0.2")), 0.2, "0.2 is not < 0.05"),
    (json_answer(prometheus_vector("NaN")), None,
     "no data: the value is NaN (a ratio over a window without traffic, for example); a gate without data fails"),
    (json_answer({"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected <EOF>"}, 400),
     None, "GET {url}/api/v1/query?query=job%3Aerrors%3Aratio5m returned HTTP 400: 1:5: parse error: unexpected <EOF>"),
    (raw_answer("<html>login</html>", content_type="text/html"), None,
     "GET {url}/api/v1/query?query=job%3Aerrors%3Aratio5m returned HTML (content-type text/html) where JSON was "
     "expected: '<html>login</html>'. Check that the URL points at the engine's API and not at a web page, proxy or "
     "login form"),
    (json_answer({"status": "error", "error": "query timed out"}), None,
     "GET {url}/api/v1/query?query=job:errors:ratio5m: Prometheus answered status 'error': query timed out"),
])
def test_prometheus_answers(vllm, gate, answer, value, detail):
    vllm.route("GET", "/api/v1/query", answer)
    result = gate(url=vllm.url, engine="openai", model="assistant", probes=0, prometheus_url=vllm.url,
                  prometheus_checks=[ERROR_RATIO])
    check = by_name(result)["prometheus error_ratio"]
    assert (result["exit_code"], result["failed_checks"]) == (1, ["prometheus error_ratio"])
    assert (check["value"], check["expected"]) == (value, "< 0.05")
    assert check["detail"] == detail.replace("{url}", vllm.url)
    assert result["msg"] == ("health gate failed for assistant at %s (1 of 3 checks failed): prometheus error_ratio: "
                             "%s" % (vllm.url, check["detail"]))


def test_prometheus_unreachable_skips_the_other_queries(vllm, gate):
    url = "http://127.0.0.1:%d" % free_port()
    result = gate(url=vllm.url, engine="openai", model="assistant", probes=0, retries=0, prometheus_url=url,
                  prometheus_checks=[ERROR_RATIO, dict(ERROR_RATIO, name="latency")])
    checks = by_name(result)
    assert checks["prometheus error_ratio"]["detail"].startswith("GET %s/api/v1/query: cannot connect (" % url)
    assert checks["prometheus latency"] == {"name": "prometheus latency", "passed": False, "value": None,
                                            "expected": "< 0.05", "detail": "not run: Prometheus could not be reached"}


PROMETHEUS_LOGIN = ("prometheus", "s3cret pass")


def basic_auth_header(username, password):
    return "Basic " + base64.b64encode(("%s:%s" % (username, password)).encode()).decode()


def behind_basic_auth(answer, username, password):
    """A Prometheus whose web configuration has one user: 401 without that login, the answer with it."""
    def handle(handler):
        if handler.headers.get("Authorization") != basic_auth_header(username, password):
            send_raw(handler, 401, "Unauthorized\n", content_type="text/plain; charset=utf-8")
            return
        answer(handler)

    return handle


@pytest.fixture
def https_prometheus(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_files / "server.pem"), str(tls_files / "server.key"))
    secure = LoopbackServer(ssl_context=context).start()
    yield secure
    secure.stop()


def test_prometheus_behind_basic_auth_and_tls_answers_the_gates_login(vllm, gate, https_prometheus, tls_files):
    https_prometheus.route("GET", "/api/v1/query",
                           behind_basic_auth(json_answer(prometheus_vector("0.01")), *PROMETHEUS_LOGIN))
    result = gate(url=vllm.url, engine="openai", api_key="engine-key-0123456789", model="assistant", probes=0,
                  prometheus_url=https_prometheus.url, prometheus_username=PROMETHEUS_LOGIN[0],
                  prometheus_password=PROMETHEUS_LOGIN[1], prometheus_ca_path=str(tls_files / "ca.pem"),
                  prometheus_checks=[ERROR_RATIO])
    assert (result["exit_code"], result["failed_checks"]) == (0, [])
    assert by_name(result)["prometheus error_ratio"]["value"] == 0.01
    # Prometheus gets its own login, never the engine's API key; the engine never gets Prometheus's login.
    assert [request["headers"]["Authorization"] for request in https_prometheus.requests] == [
        basic_auth_header(*PROMETHEUS_LOGIN)]
    assert {request["headers"].get("Authorization") for request in vllm.requests} == {"Bearer engine-key-0123456789"}
    assert PROMETHEUS_LOGIN[1] not in json.dumps(result)


def test_prometheus_asking_for_a_login_the_gate_lacks_fails_and_says_which_options(vllm, gate):
    vllm.route("GET", "/api/v1/query", behind_basic_auth(json_answer(prometheus_vector("0")), *PROMETHEUS_LOGIN))
    result = gate(url=vllm.url, engine="openai", model="assistant", probes=0, prometheus_url=vllm.url,
                  prometheus_checks=[ERROR_RATIO])
    check = by_name(result)["prometheus error_ratio"]
    assert (result["exit_code"], result["failed_checks"]) == (1, ["prometheus error_ratio"])
    assert check["detail"] == (
        "GET %s/api/v1/query?query=job%%3Aerrors%%3Aratio5m returned HTTP 401: Unauthorized. Prometheus wants a login "
        "(its web configuration has users): set prometheus_username and prometheus_password to one of them" % vllm.url)
    assert check["detail"] in result["msg"]


def test_a_wrong_prometheus_password_fails_the_same_way(vllm, gate):
    vllm.route("GET", "/api/v1/query", behind_basic_auth(json_answer(prometheus_vector("0")), *PROMETHEUS_LOGIN))
    result = gate(url=vllm.url, engine="openai", model="assistant", probes=0, prometheus_url=vllm.url,
                  prometheus_username="prometheus", prometheus_password="wrong", prometheus_checks=[ERROR_RATIO])
    assert result["exit_code"] == 1
    assert by_name(result)["prometheus error_ratio"]["detail"].endswith(
        "returned HTTP 401: Unauthorized. Prometheus wants a login (its web configuration has users): set "
        "prometheus_username and prometheus_password to one of them")
    assert "wrong" not in result["msg"]


@pytest.mark.parametrize(("spec", "answer", "passed", "value", "detail"), [
    ({"op": ">=", "value": 1, "path": "data.result[1]"},
     {"status": "success", "data": {"resultType": "scalar", "result": [1767225600, "3"]}}, True, 3.0, "3 >= 1"),
    ({"op": "==", "value": 2, "path": "length(data.result)"}, prometheus_vector("1", "1"), True, 2.0, "2 == 2"),
    ({"op": "<", "value": 1, "path": "data.result[0].metric"}, prometheus_vector("1"), False, None,
     "path data.result[0].metric yields {'instance': 'node1'}, not a number. Point path at a sample value, such as "
     "data.result[0].value[1]"),
    ({"op": "<", "value": 1, "path": "data.result[3].value[1]"}, prometheus_vector("1"), False, None,
     "no data: path data.result[3].value[1] yields null in the answer; a gate without data fails"),
    ({"op": "!=", "value": 0, "path": "data.result[].value[1]"}, prometheus_vector(), False, None,
     "no data: the query returned an empty result (no series matched). Check the query and that Prometheus scrapes "
     "the target; a gate without data fails"),
])
def test_prometheus_values_are_picked_with_jmespath(spec, answer, passed, value, detail):
    outcome = evaluate_prometheus(dict({"name": "x", "query": "q"}, **spec), answer)
    assert (outcome["passed"], outcome["value"], outcome["detail"]) == (passed, value, detail)


# -- timing, without a server --------------------------------------------------------------------

class SteppingClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def timed(clock, events):
    """Yield pieces, moving the clock to each piece's arrival time first."""
    for arrival, piece in events:
        clock.now = arrival
        yield piece


def test_ttft_is_the_first_chunk_with_text_and_rate_follows_it():
    clock = SteppingClock()
    events = [(100.05, Piece("")), (100.25, Piece("Ready")), (100.35, Piece(" now")), (100.45, Piece(".")),
              (100.5, Piece("", tokens=3, done=True))]
    figures = measure(timed(clock, events), clock)
    assert figures == {"ttft_seconds": 0.25, "seconds": 0.5, "tokens": 3, "tokens_per_second": 10.0, "chunks": 3,
                       "done": True, "cut": False}


def test_a_probe_past_its_limit_stops_reading_and_closes_the_stream():
    clock = SteppingClock()
    closed = []

    def stream():
        try:
            yield from timed(clock, [(100.1, Piece("a")), (100.6, Piece("b")), (101.0, Piece("c")),
                                     (101.1, Piece("", done=True))])
        finally:
            closed.append(True)

    figures = measure(stream(), clock, limit=0.5)
    assert (figures["cut"], figures["done"], figures["chunks"], figures["seconds"], closed) == (
        True, False, 2, 0.6, [True])


def test_an_answer_without_text_fails_and_says_so():
    clock = SteppingClock()
    figures = measure(timed(clock, [(100.2, Piece("")), (100.4, Piece("", tokens=0, done=True))]), clock)
    outcome = health.judge_probe("probe 1", figures, {"max_ttft_seconds": 1.0, "max_seconds": None})
    assert (outcome["passed"], outcome["detail"]) == (False, "the model answered with no text (no text in 0.4 s)")


def test_the_message_lists_failures_that_ran_and_counts_the_rest():
    checks = [{"name": "engine", "passed": False, "detail": "down"},
              {"name": "digest", "passed": False, "detail": "not run: the engine check failed"},
              {"name": "prometheus up", "passed": True, "detail": "1 == 1"}]
    assert failure_message("assistant", "http://n1:11434", checks) == (
        "health gate failed for assistant at http://n1:11434 (2 of 3 checks failed): engine: down; 1 check not run")


# -- arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    ({"engine": "openai", "expected_digest": "a" * 64},
     "expected_digest only applies to engine=ollama; for an OpenAI-compatible server such as vLLM check expected_root"),
    ({"expected_root": "/srv/m"}, "expected_root only applies to engine=openai; for Ollama check expected_digest"),
    ({"engine": "openai", "require_loaded": True},
     "require_loaded only applies to engine=ollama; vLLM loads its model when it starts"),
    ({"expected_digest": "abc"}, "expected_digest must be 64 hex digits, optionally prefixed with sha256: (got 'abc'); "
                                 "copy it from ollama list, ollama_info or ollama_model's result"),
    ({"probes": -1}, "probes must be between 0 and 100 (got -1)"),
    ({"max_tokens": 0}, "max_tokens must be 1 or more (got 0)"),
    ({"max_ttft_seconds": 0}, "max_ttft_seconds must be a positive number of seconds (got 0.0)"),
    ({"model": " "}, "model must not be empty"),
    ({"prometheus_checks": [ERROR_RATIO]}, "missing parameter(s) required by 'prometheus_checks': prometheus_url"),
    ({"prometheus_url": "http://127.0.0.1:9", "prometheus_checks": [ERROR_RATIO, ERROR_RATIO]},
     "prometheus_checks[1]: the name error_ratio is used twice; give each check its own name"),
    ({"prometheus_url": "http://127.0.0.1:9", "prometheus_checks": [dict(ERROR_RATIO, path="data.result[")]},
     "prometheus_checks[0] (error_ratio): path 'data.result[' is not a JMESPath expression: Invalid jmespath "
     "expression: Incomplete expression: \"data.result[\" ^"),
    ({"prometheus_url": "http://127.0.0.1:9", "prometheus_username": "prometheus", "prometheus_checks": [ERROR_RATIO]},
     "parameters are required together: prometheus_username, prometheus_password"),
    ({"prometheus_url": "prometheus:9090", "prometheus_checks": [ERROR_RATIO]},
     "prometheus_url must start with http:// or https:// (got 'prometheus:9090'), for example http://10.0.0.9:9090"),
])
def test_bad_arguments(gate, server, args, message):
    result = gate(**dict({"url": server.url, "model": "assistant"}, **args))
    assert (result["exit_code"], result["msg"]) == (1, message)
    assert server.requests == []


def test_prometheus_checks_need_jmespath(gate, server, monkeypatch):
    monkeypatch.setattr(health, "HAS_JMESPATH", False)
    result = gate(url=server.url, model="assistant", prometheus_url=server.url, prometheus_checks=[ERROR_RATIO])
    assert result["exit_code"] == 1 and result["msg"].startswith("Failed to import the required Python library "
                                                                 "(jmespath) on ")
