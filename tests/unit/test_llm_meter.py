"""The llm_meter proxy (roles/llm_meter/files/namtech_llm_meter.py): clients through the meter to the lab engine
in-process (a real Ollama API) and to scripted servers; counts, pass-through, failures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from lab.engine.core import Engine, EngineConfig
from lab.engine.faults import Faults
from lab.engine.server import EngineServer
from loopback import free_port, json_answer, stream_answer
from prometheus_client.parser import text_string_to_metric_families

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "llm_meter" / "files" / "namtech_llm_meter.py"
WAIT_SECONDS = 20


def requests_count(metrics, model, code, path):
    return metrics[("namtech_llm_requests_total", frozenset({("model", model), ("code", code), ("path", path)}))]


def load_script(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


meter_module = load_script(SCRIPT, "namtech_llm_meter")
# One client for the module: a new httpx client per request costs more than the request (its TLS context).
http = httpx.Client(timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _close_http_client():
    yield
    http.close()


def wait_for(condition, what, timeout=WAIT_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        threading.Event().wait(0.02)
    raise AssertionError("timed out waiting for %s" % what)


class RunningMeter:
    """The meter on an event loop of its own, in a background thread."""

    def __init__(self, config):
        self.loop = asyncio.new_event_loop()
        self.meter = meter_module.Meter(config)
        self.thread = threading.Thread(target=self.loop.run_forever, name="meter", daemon=True)

    def start(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.meter.start(), self.loop).result(10)
        self.port = self.meter.proxy_port
        self.url = "http://127.0.0.1:%d" % self.port
        self.metrics_url = "http://127.0.0.1:%d/metrics" % self.meter.metrics_port
        return self

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.meter.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def metrics(self):
        answer = http.get(self.metrics_url)
        assert answer.status_code == 200
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(answer.text) for sample in family.samples}

    def value(self, name, **labels):
        return self.settled().get((name, frozenset(labels.items())))

    def settled(self):
        """The metrics once every request has been recorded (a client has its answer just before that)."""
        def idle_metrics():
            metrics = self.metrics()
            return metrics if metrics[("namtech_llm_in_flight_requests", frozenset())] == 0 else None

        return wait_for(idle_metrics, "the requests in flight to end")


# -- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chat_engine(tmp_path_factory, artifact_server):
    """The lab engine with lab-chat:v1 and the alias assistant, enough parallel slots for the concurrency test."""
    config = EngineConfig(models_dir=tmp_path_factory.mktemp("models"), registry_url=artifact_server.url,
                          num_parallel=64)
    server = EngineServer(Engine(config, Faults(), on_crash=lambda: None), "127.0.0.1", 0).start()
    # Python's socketserver listens with a backlog of 5, Ollama (Go) with the system's somaxconn: without this, 50
    # connections at once overflow the backlog, and the SYNs the kernel drops take seconds to be sent again.
    server.httpd.socket.listen(128)
    try:
        http.post(server.url + "/api/pull", json={"model": "lab-chat:v1", "stream": False}, timeout=60) \
            .raise_for_status()
        http.post(server.url + "/api/copy", json={"source": "lab-chat:v1", "destination": "assistant"}) \
            .raise_for_status()
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_meter():
    started = []

    def start(upstream_url, **settings):
        document = dict({"listen_address": "127.0.0.1", "listen_port": 0, "metrics_port": 0,
                         "upstream_url": upstream_url}, **settings)
        meter = RunningMeter(meter_module.config_from_document(document)).start()
        started.append(meter)
        return meter

    yield start
    for meter in started:
        meter.stop()


@pytest.fixture
def meter(chat_engine, start_meter):
    return start_meter(chat_engine.url, models=["assistant", "lab-chat:v1"])


# -- counting --------------------------------------------------------------------------------------------------

def test_counters_exist_at_zero_for_the_configured_models(meter):
    metrics = meter.metrics()
    for model in ("assistant:latest", "lab-chat:v1"):
        assert metrics[("namtech_llm_prompt_tokens_total", frozenset({("model", model)}))] == 0
        assert metrics[("namtech_llm_generated_tokens_total", frozenset({("model", model)}))] == 0
        assert metrics[("namtech_llm_request_duration_seconds_count", frozenset({("model", model)}))] == 0
        assert metrics[("namtech_llm_request_ttft_seconds_count", frozenset({("model", model)}))] == 0
        for path in ("/api/generate", "/api/chat", "/v1/chat/completions"):
            key = ("namtech_llm_requests_total", frozenset({("model", model), ("code", "200"), ("path", path)}))
            assert metrics[key] == 0
    assert metrics[("namtech_llm_in_flight_requests", frozenset())] == 0


def ndjson_lines(lines):
    return [json.loads(line) for line in lines if line.strip()]


def ndjson(response):
    return ndjson_lines(response.iter_lines())


def sse_events(response):
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: "):]))
    return events


def ollama_counts(final):
    return final.get("prompt_eval_count", 0), final.get("eval_count", 0)


def usage_counts(answer):
    return answer["usage"]["prompt_tokens"], answer["usage"].get("completion_tokens", 0)


def through(meter, model, path, body):
    """Send one request through the meter; return the (prompt, generated) counts the engine put in its answer."""
    body = dict(body, model=model)
    if path.startswith("/api/") and body.get("stream", True):
        with http.stream("POST", meter.url + path, json=body) as response:
            assert response.status_code == 200
            return ollama_counts(ndjson(response)[-1])
    if path.startswith("/api/"):
        return ollama_counts(http.post(meter.url + path, json=body).json())
    if body.get("stream"):
        with http.stream("POST", meter.url + path, json=body) as response:
            assert response.status_code == 200
            return usage_counts(sse_events(response)[-1])
    return usage_counts(http.post(meter.url + path, json=body).json())


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
REQUESTS = [
    ("assistant", "/api/generate", {"prompt": "Why is the sky blue?", "stream": False}),
    ("assistant", "/api/generate", {"prompt": "Why is the sky blue?"}),
    ("assistant", "/api/chat", {"messages": MESSAGES, "stream": False}),
    ("lab-chat:v1", "/api/chat", {"messages": MESSAGES, "options": {"num_predict": 5}}),
    ("assistant", "/v1/chat/completions", {"messages": MESSAGES}),
    ("lab-chat:v1", "/v1/chat/completions", {"messages": MESSAGES, "stream": True,
                                             "stream_options": {"include_usage": True}}),
    ("lab-chat:v1", "/v1/completions", {"prompt": "Count to three", "max_tokens": 3}),
    ("assistant", "/api/embed", None),
]


def test_token_counts_equal_the_engines_own_counts(meter):
    expected = {"assistant:latest": [0, 0, 0], "lab-chat:v1": [0, 0, 0]}
    for model, path, body in REQUESTS:
        if body is None:
            continue
        prompt, generated = through(meter, model, path, body)
        totals = expected["assistant:latest" if model == "assistant" else model]
        totals[0] += prompt
        totals[1] += generated
        totals[2] += 1
        assert prompt > 0 and generated > 0, (path, body)
    metrics = meter.settled()
    for model, (prompt, generated, count) in expected.items():
        labels = frozenset({("model", model)})
        assert metrics[("namtech_llm_prompt_tokens_total", labels)] == prompt
        assert metrics[("namtech_llm_generated_tokens_total", labels)] == generated
        assert metrics[("namtech_llm_request_duration_seconds_count", labels)] == count
        assert metrics[("namtech_llm_request_ttft_seconds_count", labels)] == count
    requests = {(dict(labels)["model"], dict(labels)["path"]): value for (name, labels), value in metrics.items()
                if name == "namtech_llm_requests_total" and dict(labels)["code"] == "200" and value}
    assert requests == {("assistant:latest", "/api/generate"): 2, ("assistant:latest", "/api/chat"): 1,
                        ("lab-chat:v1", "/api/chat"): 1, ("assistant:latest", "/v1/chat/completions"): 1,
                        ("lab-chat:v1", "/v1/chat/completions"): 1, ("lab-chat:v1", "/v1/completions"): 1}
    assert metrics[("namtech_llm_in_flight_requests", frozenset())] == 0
    assert not [key for key in metrics if key[0] == "namtech_llm_uncounted_requests_total"]


def test_embeddings_count_prompt_tokens(meter):
    answer = http.post(meter.url + "/api/embed", json={"model": "assistant", "input": ["one two three"]})
    assert answer.status_code == 400  # lab-chat is not an embedding model: nothing to count
    assert meter.value("namtech_llm_prompt_tokens_total", model="assistant:latest") == 0
    assert meter.value("namtech_llm_requests_total", model="assistant:latest", code="400", path="/api/embed") == 1


def test_an_openai_stream_without_usage_is_counted_as_uncounted(meter):
    with http.stream("POST", meter.url + "/v1/chat/completions",
                     json={"model": "assistant", "messages": MESSAGES, "stream": True}) as response:
        assert len(sse_events(response)) > 2
    assert meter.value("namtech_llm_uncounted_requests_total", model="assistant:latest",
                       path="/v1/chat/completions") == 1
    assert meter.value("namtech_llm_generated_tokens_total", model="assistant:latest") == 0
    assert meter.value("namtech_llm_requests_total", model="assistant:latest", code="200",
                       path="/v1/chat/completions") == 1


def test_a_model_the_engine_does_not_have_is_labelled_other(meter):
    answer = http.post(meter.url + "/api/generate", json={"model": "made-up-%d" % time.time_ns(), "prompt": "x"})
    assert answer.status_code == 404
    assert meter.value("namtech_llm_requests_total", model="other", code="404", path="/api/generate") == 1
    assert meter.settled()[("namtech_llm_request_duration_seconds_count", frozenset({("model", "other")}))] == 1
    assert meter.value("namtech_llm_request_ttft_seconds_count", model="other") is None


def test_requests_without_a_model_and_other_paths(meter):
    assert http.get(meter.url + "/api/version").json() == {"version": "0.12.6-lab"}
    assert http.get(meter.url + "/api/tags?x=1").status_code == 200
    assert http.get(meter.url + "/no/such/path").status_code == 404
    metrics = meter.settled()
    assert requests_count(metrics, "", "200", "/api/version") == 1
    assert requests_count(metrics, "", "200", "/api/tags") == 1
    assert metrics[("namtech_llm_requests_total", frozenset({("model", ""), ("code", "404"), ("path", "other")}))] == 1


def test_fifty_concurrent_streams(meter):
    started = threading.Barrier(50, timeout=WAIT_SECONDS)

    def one(index):
        with client.stream("POST", meter.url + "/api/generate",
                           json={"model": "assistant", "prompt": "Question number %d" % index}) as response:
            assert response.status_code == 200, response.read()
            lines = response.iter_lines()
            first = next(lines)
            started.wait()  # all fifty streams are open at once
            return ollama_counts(ndjson_lines([first, *lines])[-1])

    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=50)) as client, \
            concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        counts = list(pool.map(one, range(50)))
    assert meter.value("namtech_llm_prompt_tokens_total", model="assistant:latest") == sum(c[0] for c in counts)
    assert meter.value("namtech_llm_generated_tokens_total", model="assistant:latest") == sum(c[1] for c in counts)
    assert meter.value("namtech_llm_requests_total", model="assistant:latest", code="200", path="/api/generate") == 50
    assert meter.value("namtech_llm_in_flight_requests") == 0


# -- pass-through ----------------------------------------------------------------------------------------------

def raw_exchange(port, request):
    """Send ``request`` bytes, read until the server closes; the answer's bytes without its Date header."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    answer = b"".join(chunks)
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"Date: "))


def post(path, body, extra=b""):
    payload = json.dumps(body).encode()
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s"
            b"Connection: close\r\n\r\n%s" % (path.encode(), len(payload), extra, payload))


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    post("/api/show", {"model": "assistant"}),
    post("/api/generate", {"model": "nothere", "prompt": "hi"}),
    b"GET /api/version HTTP/1.0\r\n\r\n",
    b"HEAD /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
])
def test_answers_are_byte_identical_to_direct_ones(chat_engine, meter, request_bytes):
    direct = raw_exchange(int(chat_engine.url.rsplit(":", 1)[1]), request_bytes)
    metered = raw_exchange(meter.port, request_bytes)
    assert metered == direct
    assert direct.startswith(b"HTTP/1.")


def scripted_generate_answer(handler):
    body = (json.dumps({"model": "assistant", "response": "Blue.", "done": True, "prompt_eval_count": 7,
                        "eval_count": 2}) + "\n").encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("X-Odd-Header", "  kept   as is ")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_generated_and_streamed_answers_are_byte_identical(server, start_meter):
    lines = [json.dumps({"model": "assistant", "response": word, "done": False}) for word in ("a", "b", "c")]
    lines.append(json.dumps({"model": "assistant", "response": "", "done": True, "prompt_eval_count": 4,
                             "eval_count": 3}))
    server.route("POST", "/api/chat", stream_answer(lines))
    server.route("POST", "/api/generate", scripted_generate_answer)
    meter = start_meter(server.url)
    upstream_port = int(server.url.rsplit(":", 1)[1])
    for request in (post("/api/chat", {"model": "assistant", "messages": []}),
                    post("/api/generate", {"model": "assistant", "prompt": "x", "stream": False})):
        direct = raw_exchange(upstream_port, request)
        assert raw_exchange(meter.port, request) == direct
    assert b"Transfer-Encoding: chunked" in raw_exchange(meter.port, post("/api/chat", {"model": "assistant"}))
    assert meter.value("namtech_llm_prompt_tokens_total", model="assistant:latest") == 4 + 7 + 4
    assert meter.value("namtech_llm_generated_tokens_total", model="assistant:latest") == 3 + 2 + 3
    # The engine saw exactly what the client sent.
    assert [server.requests[index]["body"] for index in (1, 3, 4)] == [
        json.dumps({"model": "assistant", "messages": []}).encode(),
        json.dumps({"model": "assistant", "prompt": "x", "stream": False}).encode(),
        json.dumps({"model": "assistant"}).encode()]


def test_a_stream_is_forwarded_as_it_comes_not_when_it_ends(server, start_meter):
    first_line_seen = threading.Event()

    def held_stream(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/x-ndjson")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for line, wait in ((b'{"model":"m","response":"a","done":false}\n', True),
                           (b'{"model":"m","response":"","done":true,"prompt_eval_count":1,"eval_count":1}\n',
                            False)):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            handler.wfile.flush()
            if wait:
                # The answer goes on only once the client has seen the first line: a buffering proxy never lets it.
                first_line_seen.wait(10)
        handler.wfile.write(b"0\r\n\r\n")

    server.route("POST", "/api/generate", held_stream)
    meter = start_meter(server.url)
    started = time.monotonic()
    with http.stream("POST", meter.url + "/api/generate", json={"model": "m", "prompt": "x"}) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines))["response"] == "a"
        first_line_seen.set()
        assert json.loads(next(lines))["done"] is True
    assert time.monotonic() - started < 5


def test_keep_alive_reuses_one_engine_connection(meter):
    with httpx.Client(timeout=30) as client:
        for _round in range(3):
            assert client.get(meter.url + "/api/version").status_code == 200
        metrics = meter.metrics()
        assert metrics[("namtech_llm_meter_open_connections", frozenset({("side", "client")}))] == 1
        assert metrics[("namtech_llm_meter_open_connections", frozenset({("side", "upstream")}))] == 1
    wait_for(lambda: meter.value("namtech_llm_meter_open_connections", side="upstream") == 0,
             "the engine connection to close with the client's")


def test_a_request_after_the_engine_closed_the_kept_connection_gets_a_new_one(server, start_meter):
    def answer_then_close(handler):
        json_answer({"version": "1"})(handler)
        handler.close_connection = True  # without saying so: like an engine that restarted meanwhile

    server.route("GET", "/api/version", answer_then_close)
    meter = start_meter(server.url)
    with httpx.Client(timeout=30) as client:
        for _round in range(3):
            assert client.get(meter.url + "/api/version").json() == {"version": "1"}
    assert meter.value("namtech_llm_requests_total", model="", code="200", path="/api/version") == 3


def test_expect_100_continue_passes_the_interim_answer(meter):
    payload = json.dumps({"model": "assistant"}).encode()
    with socket.create_connection(("127.0.0.1", meter.port), timeout=10) as sock:
        sock.sendall(b"POST /api/show HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n" % len(payload))
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(payload)
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") or answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"capabilities"' in answer


def test_the_host_header_can_be_rewritten_for_an_engine_on_loopback(server, start_meter):
    server.route("GET", "/api/version", json_answer({"version": "1"}))
    meter = start_meter(server.url, upstream_host_header="127.0.0.1:11435")
    http.get(meter.url + "/api/version", headers={"Host": "ai.example.com"})
    assert server.requests[0]["headers"]["Host"] == "127.0.0.1:11435"


# -- failures --------------------------------------------------------------------------------------------------

def test_engine_down_gives_502_with_a_json_error_and_a_count(start_meter, caplog):
    upstream = "http://127.0.0.1:%d" % free_port()
    meter = start_meter(upstream, models=["assistant"])
    with caplog.at_level("INFO", logger="namtech_llm_meter"):
        answer = http.post(meter.url + "/api/generate", json={"model": "assistant", "prompt": "hi"})
    assert answer.status_code == 502
    assert answer.json() == {"error": "llm_meter: cannot reach the engine at %s (Connection refused); check that the "
                                      "engine runs" % upstream}
    openai = http.post(meter.url + "/v1/chat/completions", json={"model": "assistant", "messages": MESSAGES})
    assert openai.status_code == 502
    assert openai.json() == {"error": {"message": "llm_meter: cannot reach the engine at %s (Connection refused); "
                                                  "check that the engine runs" % upstream,
                                       "type": "api_error", "param": None, "code": None}}
    metrics = meter.settled()
    assert requests_count(metrics, "assistant:latest", "502", "/api/generate") == 1
    assert requests_count(metrics, "assistant:latest", "502", "/v1/chat/completions") == 1
    assert metrics[("namtech_llm_meter_errors_total", frozenset({("stage", "connect")}))] == 2
    assert metrics[("namtech_llm_in_flight_requests", frozenset())] == 0
    # Logged when it starts, not at every request (a load balancer's health checks would flood the journal).
    assert caplog.messages == ["cannot reach the engine at %s: Connection refused" % upstream]


def test_an_engine_that_closes_without_answering_gives_502(server, start_meter):
    def close(handler):
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    server.route("POST", "/api/chat", close)
    meter = start_meter(server.url)
    answer = http.post(meter.url + "/api/chat", json={"model": "m", "messages": []})
    assert answer.status_code == 502
    assert answer.json() == {"error": "llm_meter: the engine at %s gave no answer (the engine closed the connection "
                                      "without an answer)" % server.url}
    assert meter.value("namtech_llm_meter_errors_total", stage="upstream_closed") == 1


def test_a_silent_engine_gives_504_after_the_upstream_timeout(server, start_meter):
    def silent(handler):
        handler.server.script.release.wait(10)

    server.route("POST", "/api/chat", silent)
    meter = start_meter(server.url, upstream_timeout_seconds=0.3)
    answer = http.post(meter.url + "/api/chat", json={"model": "m", "messages": []})
    assert answer.status_code == 504
    assert answer.json() == {"error": "llm_meter: the engine at %s gave no answer (no message head for 0.3s)"
                                      % server.url}
    assert meter.value("namtech_llm_meter_errors_total", stage="upstream_timeout") == 1


def test_a_client_leaving_mid_stream_frees_everything(chat_engine, meter):
    chat_engine.engine.faults.update({"slow_factor": 20})  # 150 tokens/s becomes 7.5: the stream lasts seconds
    try:
        with socket.create_connection(("127.0.0.1", meter.port), timeout=10) as sock:
            sock.sendall(post("/api/generate", {"model": "assistant", "prompt": "a long story"}))
            received = b""
            while b'"done":false' not in received:
                received += sock.recv(65536)
            assert meter.metrics()[("namtech_llm_in_flight_requests", frozenset())] == 1
        meter.settled()
        wait_for(lambda: meter.value("namtech_llm_meter_open_connections", side="upstream") == 0,
                 "the engine connection to close")
    finally:
        chat_engine.engine.faults.clear()
    metrics = meter.settled()
    assert metrics[("namtech_llm_meter_open_connections", frozenset({("side", "client")}))] == 0
    assert metrics[("namtech_llm_meter_errors_total", frozenset({("stage", "client_gone")}))] == 1
    assert requests_count(metrics, "assistant:latest", "499", "/api/generate") == 1
    # The engine stopped generating for nobody: it holds no slot of the model any more.
    wait_for(lambda: all(runner.refs == 0 for runner in chat_engine.engine.scheduler.running()), "the engine to let go")


@pytest.mark.parametrize(("request_bytes", "status", "message"), [
    (b"NONSENSE\r\n\r\n", 400, "llm_meter: bad request: malformed request line 'NONSENSE'"),
    (b"POST /api/chat HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
     "llm_meter: bad request: conflicting Content-Length headers"),
    (b"GET / HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n", 431,
     "llm_meter: bad request: a message head longer than 65536 bytes"),
])
def test_bad_requests_get_an_error_and_the_connection_closes(meter, request_bytes, status, message):
    answer = raw_exchange(meter.port, request_bytes)
    head, _blank, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 %d %s" % (status, meter_module.STATUS_REASONS[status].encode())
    assert json.loads(body) == {"error": message}
    assert meter.value("namtech_llm_meter_errors_total", stage="bad_request") == 1


def test_the_metrics_endpoint_answers_404_elsewhere(meter):
    assert http.get(meter.metrics_url.replace("/metrics", "/")).status_code == 404


# -- configuration ---------------------------------------------------------------------------------------------

BASE = {"listen_address": "10.0.0.5", "listen_port": 11434, "upstream_url": "http://127.0.0.1:11435"}


@pytest.mark.parametrize(("change", "message"), [
    ({"listen_address": "0.0.0.0"},
     'listen_address must be this node\'s private address (never every address) (got "0.0.0.0")'),
    ({"upstream_url": "https://127.0.0.1:11435"},
     'upstream_url must be an http:// URL with a host and no path (the engine) (got "https://127.0.0.1:11435")'),
    ({"upstream_url": "http://10.0.0.5:11434"},
     "upstream_url http://10.0.0.5:11434 is the meter's own address: move the engine to another address or port"),
    ({"metrics_port": 11434}, "metrics_port must differ from listen_port on the same address (both are 11434)"),
    ({"models": ["a", 3]}, 'models must be a list of model names (got ["a", 3])'),
    ({"engine": "tgi"}, 'engine must be one of ollama, vllm (got "tgi")'),
    ({"port": 1}, "unknown setting(s) port; known settings: listen_address, listen_port, upstream_url, "
                  "metrics_address, metrics_port, engine, models, upstream_host_header, connect_timeout_seconds, "
                  "upstream_timeout_seconds, idle_timeout_seconds"),
])
def test_config_errors_name_the_setting(change, message):
    with pytest.raises(meter_module.ConfigError) as error:
        meter_module.config_from_document(dict(BASE, **change))
    assert str(error.value) == message


def test_check_config(tmp_path, capsys):
    path = tmp_path / "llm_meter.json"
    path.write_text(json.dumps(BASE))
    assert meter_module.main(["--check-config", str(path)]) == 0
    assert capsys.readouterr().out == "%s: configuration OK\n" % path
    path.write_text("{")
    assert meter_module.main(["--check-config", str(path)]) == 78


def test_the_daemon_serves_until_sigterm(server, tmp_path):
    server.route("GET", "/api/version", json_answer({"version": "1"}))
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "llm_meter.json"
    config.write_text(json.dumps({"listen_address": "127.0.0.1", "listen_port": port, "metrics_port": metrics_port,
                                  "upstream_url": server.url, "models": ["assistant"]}))
    environment = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_DISABLE_CREATED_SERIES"}
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--config", str(config)], stderr=subprocess.PIPE,
                               text=True, env=environment)
    try:
        wait_for(lambda: answers("http://127.0.0.1:%d/api/version" % port), "the meter to listen")
        text = http.get("http://127.0.0.1:%d/metrics" % metrics_port).text
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert 'namtech_llm_requests_total{code="200",model="",path="/api/version"} 1.0' in text.splitlines()
    assert 'namtech_llm_prompt_tokens_total{model="assistant:latest"} 0.0' in text.splitlines()
    assert "_created" not in text
    assert process.stderr.read().splitlines() == [
        "INFO metering %s on 127.0.0.1:%d (metrics on 127.0.0.1:%d)" % (server.url, port, metrics_port)]
    process.stderr.close()


def answers(url):
    try:
        return http.get(url).status_code == 200
    except httpx.TransportError:
        return False
