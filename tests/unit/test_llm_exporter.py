"""The llm_exporter daemon (roles/llm_exporter/files/namtech_llm_exporter.py) against the lab engine in-process
(a real Ollama API, models pulled from a registry on loopback) and against scripted servers for vLLM and for
engines that misbehave."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from lab.engine.version import VERSION
from loopback import LoopbackServer, free_port, hang_answer, json_answer, raw_answer, stream_answer
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.namtech.internal_ai.plugins.module_utils.release import ReleaseRecord

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "llm_exporter" / "files" / "namtech_llm_exporter.py"
WAIT_SECONDS = 20


def load_script(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


exporter_module = load_script(SCRIPT, "namtech_llm_exporter")
# One client for the module: a new httpx client per request costs more than a scrape (its TLS context).
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
        threading.Event().wait(0.05)
    raise AssertionError("timed out waiting for %s" % what)


# -- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture
def chat_engine(start_engine):
    """A lab engine of the test's own with lab-chat:v1 pulled and the alias assistant copied from it."""
    server = start_engine()
    http.post(server.url + "/api/pull", json={"model": "lab-chat:v1", "stream": False}, timeout=60).raise_for_status()
    http.post(server.url + "/api/copy", json={"source": "lab-chat:v1", "destination": "assistant"}).raise_for_status()
    return server


@pytest.fixture
def digest(digests):
    return digests["lab-chat:v1"]


@pytest.fixture
def record_path(tmp_path):
    return tmp_path / "releases.json"


@pytest.fixture
def start_exporter(record_path, tmp_path):
    started = []

    def start(url, canary_thread=False, **settings):
        document = dict({"engine": "ollama", "url": url, "listen_address": "127.0.0.1", "listen_port": 0,
                         "timeout_seconds": 2, "release_record_path": str(record_path),
                         "nvidia_smi": str(tmp_path / "no-nvidia-smi"), "canary_enabled": False}, **settings)
        api_key = document.pop("api_key", "")
        exporter = exporter_module.Exporter(exporter_module.config_from_document(document, api_key))
        started.append(exporter.start(run_canary=canary_thread))
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def scrape(exporter):
    answer = http.get(exporter.url + "/metrics", timeout=30)
    assert answer.status_code == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def series(metrics, name):
    """{labels as a dict's items, sorted: value} of one metric name."""
    return {tuple(sorted(labels)): value for (sample, labels), value in metrics.items() if sample == name}


def value(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())))


def write_record(path, clock, **promotions):
    record = ReleaseRecord(str(path), clock=lambda: clock)
    for alias, (model, digest) in promotions.items():
        record.apply(alias, "promote", version={"model": model, "digest": digest, "engine": "ollama"},
                     by="awx-job-7")
    record.save(lambda source, destination: pathlib.Path(source).replace(destination))
    return record


MOMENT = datetime.datetime(2026, 3, 1, 10, 0, 0, tzinfo=datetime.timezone.utc)


# -- Ollama ----------------------------------------------------------------------------------------------------

def test_exports_the_engine_its_models_and_the_release_record(chat_engine, digest, record_path, start_exporter):
    record = write_record(record_path, MOMENT, assistant=("lab-chat:v1", digest))
    record.apply("assistant", "stage", version={"model": "lab-chat:v2", "digest": "b" * 64, "engine": "ollama"},
                 by="awx-job-8")
    record.save(lambda source, destination: pathlib.Path(source).replace(destination))
    http.post(chat_engine.url + "/api/generate", json={"model": "assistant", "prompt": "", "keep_alive": "10m"},
              timeout=30).raise_for_status()
    exporter = start_exporter(chat_engine.url)

    metrics = scrape(exporter)
    now = time.time()

    assert value(metrics, "namtech_llm_up", engine="ollama") == 1
    assert value(metrics, "namtech_llm_engine_info", engine="ollama", version=VERSION) == 1
    assert 0 < value(metrics, "namtech_llm_scrape_duration_seconds", engine="ollama") < 2
    size = value(metrics, "namtech_llm_model_size_bytes", model="lab-chat:v1", digest=digest)
    assert size > 4 * 1024 * 1024
    assert series(metrics, "namtech_llm_model_size_bytes") == {
        (("digest", digest), ("model", "assistant:latest")): size, (("digest", digest), ("model", "lab-chat:v1")): size}
    assert series(metrics, "namtech_llm_model_loaded") == {
        (("digest", digest), ("model", "assistant:latest")): 1, (("digest", digest), ("model", "lab-chat:v1")): 0}
    assert series(metrics, "namtech_llm_model_vram_bytes") == {(("model", "assistant:latest"),): 0}
    in_memory = http.get(chat_engine.url + "/api/ps", timeout=10).json()["models"][0]["size"]
    assert series(metrics, "namtech_llm_model_memory_bytes") == {(("model", "assistant:latest"),): in_memory}
    expires = value(metrics, "namtech_llm_model_expires_timestamp_seconds", model="assistant:latest")
    assert now + 500 < expires < now + 610
    assert series(metrics, "namtech_llm_alias_info") == {
        (("alias", "assistant"), ("digest", digest), ("model", "lab-chat:v1")): 1}
    assert series(metrics, "namtech_model_release_info") == {
        (("alias", "assistant"), ("deployed_by", "awx-job-7"), ("digest", digest), ("engine", "ollama"),
         ("model", "lab-chat:v1")): 1}
    assert series(metrics, "namtech_model_release_since_timestamp_seconds") == {
        (("alias", "assistant"),): MOMENT.timestamp()}
    assert series(metrics, "namtech_model_release_candidate_info") == {
        (("alias", "assistant"), ("digest", "b" * 64), ("model", "lab-chat:v2")): 1}
    assert value(metrics, "namtech_model_release_record_ok") == 1
    assert set(series(metrics, "namtech_llm_exporter_errors_total").values()) == {0}
    assert {labels[0][1] for labels in series(metrics, "namtech_llm_exporter_errors_total")} == {
        "version", "tags", "ps", "release_record", "gpu", "canary", "collect"}
    assert series(metrics, "namtech_gpu_temperature_celsius") == {}
    assert value(metrics, "process_resident_memory_bytes") > 0


def test_alias_info_shows_what_the_engine_serves_when_it_differs_from_the_record(chat_engine, digest, record_path,
                                                                                 start_exporter):
    write_record(record_path, MOMENT, assistant=("lab-chat:v2", "c" * 64), missing=("lab-chat:v1", digest))
    metrics = scrape(start_exporter(chat_engine.url))
    # The record says v2 with digest c..c; the engine still serves v1's digest under the alias; "missing" is not
    # on the engine at all.
    assert series(metrics, "namtech_llm_alias_info") == {
        (("alias", "assistant"), ("digest", digest), ("model", "lab-chat:v2")): 1}
    assert len(series(metrics, "namtech_model_release_info")) == 2


def test_the_record_file_missing_gives_no_release_series(chat_engine, start_exporter):
    metrics = scrape(start_exporter(chat_engine.url))
    assert value(metrics, "namtech_model_release_record_ok") == 1
    for name in ("namtech_model_release_info", "namtech_model_release_since_timestamp_seconds",
                 "namtech_model_release_candidate_info", "namtech_llm_alias_info"):
        assert series(metrics, name) == {}
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="release_record") == 0


@pytest.mark.parametrize("case", [
    ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ('{"format": 2, "aliases": {}}', "is not in format 1: 'format' is 2, expected 1"),
    ('{"format": 1, "aliases": []}', "is not in format 1: 'aliases' is not an object"),
    ('{"format": 1, "aliases": {"assistant": {"current": {"digest": "x"}}}}',
     "is not in format 1: aliases.assistant.current is not an object with a string 'model'"),
])
def test_a_corrupt_record_gives_record_ok_0_an_error_and_a_log_line(chat_engine, record_path, start_exporter, caplog,
                                                                    case):
    content, problem = case
    record_path.write_text(content)
    exporter = start_exporter(chat_engine.url)
    with caplog.at_level("WARNING", logger="namtech_llm_exporter"):
        metrics = scrape(exporter)
    assert value(metrics, "namtech_model_release_record_ok") == 0
    assert series(metrics, "namtech_model_release_info") == {}
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="release_record") == 1
    assert value(metrics, "namtech_llm_up", engine="ollama") == 1
    assert caplog.messages == ["release_record: the release record %s %s" % (record_path, problem)]


def test_a_repeated_failure_is_logged_once(chat_engine, record_path, start_exporter, caplog):
    record_path.write_text("[]")
    exporter = start_exporter(chat_engine.url)
    with caplog.at_level("WARNING", logger="namtech_llm_exporter"):
        scrape(exporter)
        metrics = scrape(exporter)
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="release_record") == 2
    assert len(caplog.messages) == 1


def test_engine_down_gives_up_0_and_the_record_still_exported(record_path, start_exporter, caplog):
    write_record(record_path, MOMENT, assistant=("lab-chat:v1", "a" * 64))
    url = "http://127.0.0.1:%d" % free_port()
    exporter = start_exporter(url)
    with caplog.at_level("WARNING", logger="namtech_llm_exporter"):
        metrics = scrape(exporter)
    assert value(metrics, "namtech_llm_up", engine="ollama") == 0
    assert series(metrics, "namtech_llm_engine_info") == {}
    assert series(metrics, "namtech_llm_model_size_bytes") == {}
    assert series(metrics, "namtech_llm_alias_info") == {}
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="version") == 1
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="tags") == 0
    assert len(series(metrics, "namtech_model_release_info")) == 1
    assert caplog.messages == ["version: GET %s/api/version failed: Connection refused" % url]


def test_a_hung_engine_cannot_hang_the_scrape():
    hung = LoopbackServer().route("GET", "/api/version", hang_answer).start()
    config = exporter_module.config_from_document({"engine": "ollama", "url": hung.url,
                                                   "listen_address": "127.0.0.1", "listen_port": 0,
                                                   "timeout_seconds": 0.5, "canary_enabled": False,
                                                   "nvidia_smi": ""})
    exporter = exporter_module.Exporter(config).start()
    try:
        started = time.monotonic()
        metrics = scrape(exporter)
        elapsed = time.monotonic() - started
    finally:
        exporter.stop()
        hung.stop()
    assert elapsed < 2.5
    assert value(metrics, "namtech_llm_up", engine="ollama") == 0
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="version") == 1


def test_a_trickling_engine_is_cut_off_at_the_deadline(server, start_exporter):
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _attempt in range(1000):
            if handler.server.script.release.wait(0.1):
                return
            handler.wfile.write(b" ")
            handler.wfile.flush()

    server.route("GET", "/api/version", trickle)
    started = time.monotonic()
    metrics = scrape(start_exporter(server.url, timeout_seconds=0.5))
    assert time.monotonic() - started < 2.5
    assert value(metrics, "namtech_llm_up", engine="ollama") == 0


VERSION_ANSWER = json_answer({"version": "0.12.6"})


@pytest.mark.parametrize("case", [
    ({"/api/version": raw_answer("<html>proxy error</html>", content_type="text/html")}, "version",
     "GET {url}/api/version: the answer is not JSON (Expecting value: line 1 column 1 (char 0))"),
    ({"/api/version": json_answer({"version": 12})}, "version",
     "GET {url}/api/version: the answer has no valid 'version'"),
    ({"/api/version": json_answer(["0.12.6"])}, "version", "GET {url}/api/version: the answer is not a JSON object"),
    ({"/api/version": json_answer({"error": "overloaded"}, status=503)}, "version",
     'GET {url}/api/version answered HTTP 503: {{"error": "overloaded"}}'),
    ({"/api/version": VERSION_ANSWER, "/api/tags": json_answer({"models": "none"}),
      "/api/ps": json_answer({"models": []})}, "tags", "GET {url}/api/tags: the answer has no valid 'models'"),
    ({"/api/version": VERSION_ANSWER,
      "/api/tags": json_answer({"models": [{"name": "a:1", "digest": "d" * 64, "size": 5}, {"name": "b:1"}]}),
      "/api/ps": json_answer({"models": []})}, "tags", "GET {url}/api/tags: 1 model(s) without a name, digest or size"),
    ({"/api/version": VERSION_ANSWER, "/api/tags": json_answer({"models": []}),
      "/api/ps": raw_answer("")}, "ps",
     "GET {url}/api/ps: the answer is not JSON (Expecting value: line 1 column 1 (char 0))"),
])
def test_malformed_answers_give_up_0_an_error_count_and_a_log_line(server, start_exporter, caplog, case):
    routes, stage, message = case
    for path, answer in routes.items():
        server.route("GET", path, answer)
    exporter = start_exporter(server.url)
    with caplog.at_level("WARNING", logger="namtech_llm_exporter"):
        metrics = scrape(exporter)
    assert value(metrics, "namtech_llm_up", engine="ollama") == 0
    assert value(metrics, "namtech_llm_exporter_errors_total", stage=stage) == 1
    assert caplog.messages == ["%s: %s" % (stage, message.format(url=server.url))]


def test_the_valid_models_of_a_partly_malformed_list_are_still_exported(server, start_exporter):
    server.route("GET", "/api/version", VERSION_ANSWER)
    server.route("GET", "/api/tags", json_answer({"models": [{"name": "a:1", "digest": "sha256:" + "D" * 64,
                                                              "size": 5}, "junk"]}))
    server.route("GET", "/api/ps", json_answer({"models": [{"name": "a:1", "digest": "d" * 64, "size": 9,
                                                            "size_vram": 4,
                                                            "expires_at": "2026-03-01T11:00:00.123456789+01:00"}]}))
    metrics = scrape(start_exporter(server.url))
    assert value(metrics, "namtech_llm_up", engine="ollama") == 0
    assert series(metrics, "namtech_llm_model_size_bytes") == {(("digest", "d" * 64), ("model", "a:1")): 5}
    assert series(metrics, "namtech_llm_model_vram_bytes") == {(("model", "a:1"),): 4}
    expected = datetime.datetime(2026, 3, 1, 10, 0, 0, tzinfo=datetime.timezone.utc).timestamp() + 0.123456789
    assert value(metrics, "namtech_llm_model_expires_timestamp_seconds", model="a:1") == pytest.approx(expected)


# -- the canary ------------------------------------------------------------------------------------------------

def test_the_canary_thread_observes_time_to_first_token_and_speed(chat_engine, start_exporter):
    exporter = start_exporter(chat_engine.url, canary_thread=True, canary_enabled=True, canary_interval_seconds=1)

    def observed():
        metrics = scrape(exporter)
        done = value(metrics, "namtech_llm_canary_ttft_seconds_count", model="assistant:latest")
        return metrics if done and done >= 1 else None

    metrics = wait_for(observed, "a canary observation")
    assert value(metrics, "namtech_llm_canary_requests_total", model="assistant:latest", result="success") >= 1
    assert value(metrics, "namtech_llm_canary_requests_total", model="assistant:latest", result="error") == 0
    assert value(metrics, "namtech_llm_canary_requests_total", model="assistant:latest", result="timeout") == 0
    assert value(metrics, "namtech_llm_canary_tokens_per_second_count", model="assistant:latest") >= 1
    # lab-chat:v1 answers at 150 tokens/s after 30 ms (plus 0.3 s to load on the first request); a busy machine
    # sleeps longer between tokens.
    assert 10 < value(metrics, "namtech_llm_canary_tokens_per_second_sum", model="assistant:latest") \
        / value(metrics, "namtech_llm_canary_tokens_per_second_count", model="assistant:latest") < 400
    assert value(metrics, "namtech_llm_canary_ttft_seconds_bucket", model="assistant:latest", le="0.01") == 0
    assert value(metrics, "namtech_llm_canary_ttft_seconds_bucket", model="assistant:latest", le="5.0") >= 1
    assert time.time() - 30 < value(metrics, "namtech_llm_canary_last_success_timestamp_seconds",
                                    model="assistant:latest") <= time.time()


def loaded_models(chat_engine):
    return {entry["name"]: entry for entry in http.get(chat_engine.url + "/api/ps", timeout=10).json()["models"]}


def test_the_canary_keeps_the_engine_default_keep_alive(chat_engine, start_exporter):
    exporter = start_exporter(chat_engine.url, canary_enabled=True, canary_interval_seconds=3600)
    assert exporter.canary.run_once() == "success"
    expires = exporter_module.parse_rfc3339(loaded_models(chat_engine)["assistant:latest"]["expires_at"])
    # The lab engine's default keep_alive is 5 minutes, like Ollama's.
    assert time.time() + 240 < expires < time.time() + 310


def test_a_configured_keep_alive_is_sent(chat_engine, start_exporter):
    exporter = start_exporter(chat_engine.url, canary_enabled=True, canary_interval_seconds=3600, canary_keep_alive="0")
    assert exporter.canary.run_once() == "success"
    assert loaded_models(chat_engine) == {}


def test_a_canary_on_a_missing_model_counts_an_error(chat_engine, start_exporter, caplog):
    exporter = start_exporter(chat_engine.url, canary_enabled=True, canary_interval_seconds=3600,
                              canary_model="nothere")
    with caplog.at_level("WARNING", logger="namtech_llm_exporter"):
        assert exporter.canary.run_once() == "error"
    metrics = scrape(exporter)
    assert value(metrics, "namtech_llm_canary_requests_total", model="nothere:latest", result="error") == 1
    assert value(metrics, "namtech_llm_canary_ttft_seconds_count", model="nothere:latest") == 0
    assert value(metrics, "namtech_llm_canary_last_success_timestamp_seconds", model="nothere:latest") == 0
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="canary") == 1
    assert caplog.messages == [
        "canary: POST %s/api/generate answered HTTP 404: {\"error\":\"model 'nothere' not found\"}" % chat_engine.url]


def test_a_hung_canary_counts_a_timeout(server, start_exporter):
    server.route("POST", "/api/generate", hang_answer)
    exporter = start_exporter(server.url, canary_enabled=True, canary_interval_seconds=3600,
                              canary_timeout_seconds=0.3)
    started = time.monotonic()
    assert exporter.canary.run_once() == "timeout"
    assert time.monotonic() - started < 2
    assert value(scrape(exporter), "namtech_llm_canary_requests_total", model="assistant:latest",
                 result="timeout") == 1


def test_a_canary_stream_without_its_final_object_is_an_error(server, start_exporter):
    server.route("POST", "/api/generate", stream_answer([json.dumps({"response": "o", "done": False})]))
    exporter = start_exporter(server.url, canary_enabled=True, canary_interval_seconds=3600)
    assert exporter.canary.run_once() == "error"


# -- vLLM ------------------------------------------------------------------------------------------------------

def sse(*events):
    return ["data: %s\n" % json.dumps(event) for event in events] + ["data: [DONE]\n"]


def vllm_chunk(content):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "assistant",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


def test_vllm_mode_exports_health_version_and_the_canary(server, start_exporter, record_path):
    write_record(record_path, MOMENT, assistant=("Qwen/Qwen2.5-0.5B-Instruct", None))
    server.route("GET", "/health", raw_answer("", content_type="text/plain"))
    server.route("GET", "/version", json_answer({"version": "0.11.0"}))
    server.route("GET", "/v1/models", json_answer({"object": "list", "data": [
        {"id": "assistant", "object": "model", "owned_by": "vllm", "root": "/var/lib/vllm/models/qwen"}]}))
    usage = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "assistant", "choices": [],
             "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}
    server.route("POST", "/v1/chat/completions",
                 stream_answer(sse(vllm_chunk("o"), vllm_chunk("k"), vllm_chunk("."), usage),
                               content_type="text/event-stream"))
    exporter = start_exporter(server.url, engine="vllm", api_key="s3cret", canary_enabled=True,
                              canary_interval_seconds=3600)
    assert exporter.canary.run_once() == "success"
    metrics = scrape(exporter)

    assert value(metrics, "namtech_llm_up", engine="vllm") == 1
    assert value(metrics, "namtech_llm_engine_info", engine="vllm", version="0.11.0") == 1
    assert series(metrics, "namtech_llm_model_size_bytes") == {}
    assert series(metrics, "namtech_llm_model_loaded") == {(("digest", ""), ("model", "assistant")): 1}
    assert series(metrics, "namtech_llm_alias_info") == {
        (("alias", "assistant"), ("digest", ""), ("model", "Qwen/Qwen2.5-0.5B-Instruct")): 1}
    assert series(metrics, "namtech_model_release_info") == {
        (("alias", "assistant"), ("deployed_by", "awx-job-7"), ("digest", ""), ("engine", "ollama"),
         ("model", "Qwen/Qwen2.5-0.5B-Instruct")): 1}
    assert value(metrics, "namtech_llm_canary_requests_total", model="assistant", result="success") == 1
    assert value(metrics, "namtech_llm_canary_tokens_per_second_count", model="assistant") == 1
    assert {labels[0][1] for labels in series(metrics, "namtech_llm_exporter_errors_total")} == {
        "health", "version", "models", "release_record", "gpu", "canary", "collect"}
    assert {request["headers"].get("Authorization") for request in server.requests} == {"Bearer s3cret"}
    canary_body = json.loads(server.requests[0]["body"])
    assert canary_body == {"model": "assistant", "messages": [{"role": "user", "content": "Reply with one word: ok"}],
                           "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}}


def test_vllm_refusing_the_api_key_gives_up_0(server, start_exporter, caplog):
    server.route("GET", "/health", raw_answer("", content_type="text/plain"))
    server.route("GET", "/version", json_answer({"version": "0.11.0"}))
    server.route("GET", "/v1/models", json_answer({"error": "Unauthorized"}, status=401))
    with caplog.at_level("WARNING", logger="namtech_llm_exporter"):
        metrics = scrape(start_exporter(server.url, engine="vllm", api_key="wrong"))
    assert value(metrics, "namtech_llm_up", engine="vllm") == 0
    assert value(metrics, "namtech_llm_engine_info", engine="vllm", version="0.11.0") == 1
    assert caplog.messages == ['models: GET %s/v1/models answered HTTP 401: {"error": "Unauthorized"}' % server.url]


def test_vllm_unhealthy_gives_up_0(server, start_exporter):
    server.route("GET", "/health", raw_answer("", status=503, content_type="text/plain"))
    metrics = scrape(start_exporter(server.url, engine="vllm"))
    assert value(metrics, "namtech_llm_up", engine="vllm") == 0
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="health") == 1
    assert series(metrics, "namtech_llm_engine_info") == {}


def test_vllm_canary_error_event_is_an_error(server, start_exporter):
    server.route("POST", "/v1/chat/completions",
                 stream_answer(["data: %s\n" % json.dumps({"error": {"message": "boom"}})],
                               content_type="text/event-stream"))
    exporter = start_exporter(server.url, engine="vllm", canary_enabled=True, canary_interval_seconds=3600)
    assert exporter.canary.run_once() == "error"


# -- GPUs ------------------------------------------------------------------------------------------------------

def fake_nvidia_smi(tmp_path, output, status=0):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n%sEOF\nexit %d\n" % (output, status))
    script.chmod(0o755)
    return str(script)


def test_gpu_readings_from_nvidia_smi(server, start_exporter, tmp_path):
    server.route("GET", "/api/version", hang_answer)
    binary = fake_nvidia_smi(tmp_path, "0, GPU-aaaa, NVIDIA L4, 61, 70.52, 20480, 23034\n"
                                       "1, GPU-bbbb, NVIDIA L4, 45, [N/A], 0, 23034\n")
    metrics = scrape(start_exporter(server.url, timeout_seconds=0.2, nvidia_smi=binary))
    assert series(metrics, "namtech_gpu_info") == {
        (("gpu", "0"), ("name", "NVIDIA L4"), ("uuid", "GPU-aaaa")): 1,
        (("gpu", "1"), ("name", "NVIDIA L4"), ("uuid", "GPU-bbbb")): 1}
    assert series(metrics, "namtech_gpu_temperature_celsius") == {(("gpu", "0"),): 61, (("gpu", "1"),): 45}
    assert series(metrics, "namtech_gpu_power_watts") == {(("gpu", "0"),): 70.52}
    assert series(metrics, "namtech_gpu_memory_used_bytes") == {(("gpu", "0"),): 20480 * 2**20, (("gpu", "1"),): 0}
    assert series(metrics, "namtech_gpu_memory_total_bytes") == {(("gpu", "0"),): 23034 * 2**20,
                                                                 (("gpu", "1"),): 23034 * 2**20}


def test_a_failing_nvidia_smi_counts_a_gpu_error(server, start_exporter, tmp_path, caplog):
    server.route("GET", "/api/version", VERSION_ANSWER)
    binary = fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the driver\n", 9)
    with caplog.at_level("WARNING", logger="namtech_llm_exporter"):
        metrics = scrape(start_exporter(server.url, nvidia_smi=binary))
    assert value(metrics, "namtech_llm_exporter_errors_total", stage="gpu") == 1
    assert series(metrics, "namtech_gpu_info") == {}
    assert "gpu: nvidia-smi failed (exit status 9): NVIDIA-SMI has failed because it couldn't communicate with " \
           "the driver" in caplog.messages


# -- configuration and parsing ---------------------------------------------------------------------------------

BASE = {"engine": "ollama", "url": "http://10.0.0.5:11434", "listen_address": "10.0.0.5"}


@pytest.mark.parametrize(("change", "message"), [
    ({"engine": "llamacpp"}, 'engine must be one of ollama, vllm (got "llamacpp")'),
    ({"url": "10.0.0.5:11434"}, 'url must be an http:// or https:// URL with a host (got "10.0.0.5:11434")'),
    ({"listen_address": "0.0.0.0"},
     'listen_address must be this node\'s private address (never every address) (got "0.0.0.0")'),
    ({"listen_port": "9778"}, 'listen_port must be a TCP port (got "9778")'),
    ({"canary_enabled": "yes"}, 'canary_enabled must be true or false (got "yes")'),
    ({"canary_num_predict": True}, "canary_num_predict must be a number of tokens, at least 1 (got true)"),
    ({"release_record_path": "releases.json"}, 'release_record_path must be an absolute path (got "releases.json")'),
    ({"canary_intervall": 5}, "unknown setting(s) canary_intervall; known settings: engine, url, listen_address, "
                              "listen_port, timeout_seconds, release_record_path, ca_file, nvidia_smi, "
                              "gpu_timeout_seconds, canary_enabled, canary_model, canary_interval_seconds, "
                              "canary_timeout_seconds, canary_prompt, canary_num_predict, canary_keep_alive"),
])
def test_config_errors_name_the_setting(change, message):
    with pytest.raises(exporter_module.ConfigError) as error:
        exporter_module.config_from_document(dict(BASE, **change))
    assert str(error.value) == message


def test_check_config_and_the_api_key_from_the_environment(tmp_path, capsys, monkeypatch):
    path = tmp_path / "llm_exporter.json"
    path.write_text(json.dumps(dict(BASE, engine="vllm")))
    monkeypatch.setenv("NAMTECH_LLM_API_KEY", "k3y")
    assert exporter_module.load_config(str(path)).api_key == "k3y"
    assert "k3y" not in repr(exporter_module.load_config(str(path)))
    assert exporter_module.main(["--check-config", str(path)]) == 0
    assert capsys.readouterr().out == "%s: configuration OK\n" % path
    path.write_text(json.dumps({"engine": "ollama"}))
    assert exporter_module.main(["--check-config", str(path)]) == 78
    missing = tmp_path / "missing.json"
    with pytest.raises(exporter_module.ConfigError) as error:
        exporter_module.load_config(str(missing))
    assert str(error.value) == "cannot read %s: No such file or directory" % missing


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01T10:00:00Z", 1772359200.0),
    ("2026-03-01T11:30:00+01:30", 1772359200.0),
    ("2026-03-01T10:00:00.5-00:00", 1772359200.5),
    ("2318-01-01T00:00:00Z", 10981785600.0),
    ("yesterday", None),
    (None, None),
    ("2026-02-30T10:00:00Z", None),
])
def test_rfc3339_times(text, expected):
    assert exporter_module.parse_rfc3339(text) == expected


def test_the_metrics_endpoint_answers_404_elsewhere(server, start_exporter):
    server.route("GET", "/api/version", VERSION_ANSWER)
    exporter = start_exporter(server.url)
    assert http.get(exporter.url + "/", timeout=5).text == "namtech LLM exporter: the metrics are at /metrics\n"
    assert http.get(exporter.url + "/other", timeout=5).status_code == 404


def test_the_daemon_serves_until_sigterm(server, tmp_path):
    for path, answer in (("/api/version", VERSION_ANSWER), ("/api/tags", json_answer({"models": []})),
                         ("/api/ps", json_answer({"models": []}))):
        server.route("GET", path, answer)
    port = free_port()
    config = tmp_path / "llm_exporter.json"
    config.write_text(json.dumps({"engine": "ollama", "url": server.url, "listen_address": "127.0.0.1",
                                  "listen_port": port, "canary_enabled": False, "nvidia_smi": "",
                                  "release_record_path": str(tmp_path / "releases.json")}))
    environment = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_DISABLE_CREATED_SERIES"}
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--config", str(config)], stderr=subprocess.PIPE,
                               text=True, env=environment)
    try:
        text = wait_for(lambda: metrics_text("http://127.0.0.1:%d/metrics" % port), "the daemon to answer")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert 'namtech_llm_up{engine="ollama"} 1.0' in text.splitlines()
    assert "_created" not in text
    assert process.stderr.read().splitlines() == [
        "INFO exporting ollama metrics of %s on http://127.0.0.1:%d/metrics (canary off)" % (server.url, port)]
    process.stderr.close()


def metrics_text(url):
    try:
        answer = http.get(url)
    except httpx.TransportError:
        return None
    return answer.text if answer.status_code == 200 else None


def test_an_ipv6_engine_address_is_bracketed_in_urls():
    config = exporter_module.config_from_document(dict(BASE, url="http://[fd00::5]:11434/"))
    endpoint = exporter_module.make_probe(config).endpoint
    assert (endpoint.host, endpoint.port, endpoint.base_path) == ("fd00::5", 11434, "")
    assert endpoint.url_for("/api/tags") == "http://[fd00::5]:11434/api/tags"
