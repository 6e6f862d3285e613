"""llm_eval against the lab engine in-process: lab-chat:v1, v2 and bad pulled from a registry on loopback.

One engine serves the whole module (pulling takes a moment); each test starts with its faults cleared.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import re

import pytest
from loopback import free_port

from ansible_collections.namtech.internal_ai.plugins.modules import llm_eval

LAB_SUITE = str(pathlib.Path(__file__).resolve().parents[1] / "lab" / "evals" / "lab-chat.yml")
NUMBER = r"\d+(?:\.\d+)?"


@pytest.fixture
def engine(shared_chat_engine):
    """The module's engine (conftest.py), without faults when the test starts and when it ends."""
    shared_chat_engine.engine.faults.clear()
    yield shared_chat_engine
    shared_chat_engine.engine.faults.clear()


@pytest.fixture
def faults(engine):
    return engine.engine.faults


@pytest.fixture
def evaluate(engine, run_module):
    """Run llm_eval against the engine; ``repetitions=1`` unless a test asks for more, to stay fast."""

    def run(check_mode=False, **args):
        module_args = dict({"url": engine.url, "suite": LAB_SUITE, "repetitions": 1}, **args)
        return run_module(llm_eval, dict((key, value) for key, value in module_args.items() if value is not None),
                          check_mode=check_mode)

    return run


def write_suite(directory, text, name="suite.yml"):
    path = directory / name
    path.write_text(text)
    return str(path)


ONE_CASE_SUITE = """
name: one-case
defaults: {repetitions: 8, concurrency: 1, warmup: 1}
cases:
  - id: capital
    prompt: What is the capital of France?
    checks: [{contains: Paris}]
"""


def test_a_better_candidate_passes_against_the_baseline_model(evaluate, engine):
    result = evaluate(model="lab-chat:v2", baseline_model="lab-chat:v1")
    assert result["exit_code"] == 0, result
    assert (result["changed"], result["passed"], result["reasons"]) == (False, True, [])
    assert (result["suite"], result["model"], result["engine"], result["url"]) == (
        "lab-chat", "lab-chat:v2", "ollama", engine.url)
    assert (result["score"], result["requests"], result["errors"]) == (1.0, 7, 0)
    assert [case["id"] for case in result["cases"]] == [
        "capital-of-france", "days-in-a-week", "two-plus-two", "red-planet", "sky-colour", "boiling-point", "latency"]
    assert all(case["passed_repetitions"] == 1 and case["failures"] == [] for case in result["cases"])
    baseline = result["baseline"]
    assert (baseline["model"], baseline["source"], baseline["score"], baseline["requests"]) == (
        "lab-chat:v1", "model", 1.0, 7)
    comparison = result["comparison"]
    assert comparison["score_drop"] == 0.0
    assert comparison["latency_ratio"] < 1.0 and comparison["ttft_ratio"] > 0
    assert comparison["tokens_per_second_ratio"] > 1.5  # v2 generates at twice the speed of v1
    assert result["thresholds"] == {"min_score": 0.9, "max_score_drop": 0.05, "max_latency_ratio": 1.5,
                                    "max_ttft_ratio": None}
    latency = result["latency"]
    assert 0 < latency["ttft_seconds"]["p50"] <= latency["ttft_seconds"]["p95"] <= latency["ttft_seconds"]["max"]
    assert latency["ttft_seconds"]["max"] < latency["total_seconds"]["max"]
    assert result["tokens_per_second"]["p50"] > 0 and result["tokens_per_second"]["mean"] > 0
    assert "report" not in result


def test_a_wrong_and_slow_candidate_is_rejected_with_its_reasons(evaluate):
    result = evaluate(model="lab-chat:bad", baseline_model="lab-chat:v1")
    assert (result["exit_code"], result["passed"], result["score"]) == (0, False, 0.0)
    reasons = result["reasons"]
    assert reasons[:2] == [
        "score 0 is below min_score 0.9",
        "score 0 is 1 below the score 1 of the baseline lab-chat:v1, more than max_score_drop 0.05",
    ]
    assert re.fullmatch(r"p95 total latency %s s is %s times that of the baseline lab-chat:v1 \(%s s\), more than "
                        r"max_latency_ratio 1\.5" % (NUMBER, NUMBER, NUMBER), reasons[2]), reasons[2]
    assert len(reasons) == 3
    assert result["comparison"]["latency_ratio"] > 3
    capital = result["cases"][0]
    assert capital["failures"] == [{"repetition": 1, "check": "contains", "answer": "The capital of France is Berlin.",
                                    "message": "the answer does not contain 'Paris'"}]
    latency_checks = [failure["check"] for failure in result["cases"][-1]["failures"]]
    assert latency_checks == ["max_ttft_seconds", "min_tokens_per_second", "max_seconds"]


def test_fail_on_reject_fails_the_task_with_the_reasons(evaluate):
    result = evaluate(model="lab-chat:bad", baseline_model="lab-chat:v1", fail_on_reject=True, max_latency_ratio=100)
    assert result["exit_code"] == 1 and result["failed"] is True
    assert result["msg"] == ("lab-chat:bad is rejected by suite lab-chat: score 0 is below min_score 0.9; score 0 is 1 "
                             "below the score 1 of the baseline lab-chat:v1, more than max_score_drop 0.05")
    assert result["thresholds"]["max_latency_ratio"] == 100


def test_options_override_the_suites_thresholds(evaluate):
    result = evaluate(model="lab-chat:bad", min_score=0.0, max_score_drop=1.0, max_latency_ratio=100)
    assert (result["passed"], result["reasons"]) == (True, [])
    assert "baseline" not in result and "comparison" not in result


def test_reports_are_written_and_serve_as_a_baseline_later(evaluate, tmp_path):
    reports = tmp_path / "reports"
    first = evaluate(model="lab-chat:v1", report_dir=str(reports))
    assert (first["exit_code"], first["changed"], first["passed"]) == (0, True, True)
    json_path, markdown_path = first["report"]["json"], first["report"]["markdown"]
    assert pathlib.Path(json_path).parent == reports
    assert pathlib.Path(json_path).name.startswith("lab-chat-lab-chat_v1-") and json_path.endswith("Z.json")
    assert markdown_path == json_path[: -len(".json")] + ".md"
    assert sorted(path.name for path in reports.iterdir()) == sorted(
        [pathlib.Path(json_path).name, pathlib.Path(markdown_path).name])  # no temporary file left behind
    document = json.loads(pathlib.Path(json_path).read_text())
    returned_only = ("changed", "report", "invocation", "exit_code")
    assert document == dict((key, value) for key, value in first.items() if key not in returned_only)
    markdown = pathlib.Path(markdown_path).read_text()
    assert markdown.startswith("# Evaluation of lab-chat:v1 with suite lab-chat\n\n**Passed**\n")
    assert "| capital-of-france | 1 | 1/1 | 1 |" in markdown

    second = evaluate(model="lab-chat:bad", baseline=json_path, max_latency_ratio=2)
    assert (second["exit_code"], second["changed"], second["passed"]) == (0, False, False)
    assert second["baseline"]["source"] == "file" and second["baseline"]["path"] == json_path
    assert second["baseline"]["model"] == "lab-chat:v1" and second["baseline"]["score"] == 1.0
    assert second["reasons"][1] == ("score 0 is 1 below the score 1 of the baseline lab-chat:v1, more than "
                                    "max_score_drop 0.05")
    assert second["reasons"][2].endswith(" s), more than max_latency_ratio 2")


def test_a_report_that_cannot_be_written_fails_and_leaves_no_temporary_file(evaluate, tmp_path, monkeypatch):
    def disk_full(_descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    reports = tmp_path / "reports"
    monkeypatch.setattr(os, "fsync", disk_full)
    result = evaluate(model="lab-chat:v1", report_dir=str(reports))
    assert result["exit_code"] == 1
    expected = (r"cannot write the report %s/lab-chat-lab-chat_v1-\d{8}T\d{6}Z\.json: \[Errno 28\] No space left on "
                r"device\. Check that the directory is writable" % re.escape(str(reports)))
    assert re.fullmatch(expected, result["msg"]), result["msg"]
    assert list(reports.iterdir()) == []


def test_check_mode_evaluates_but_writes_no_report(evaluate, tmp_path):
    reports = tmp_path / "reports"
    result = evaluate(check_mode=True, model="lab-chat:v2", report_dir=str(reports))
    assert (result["exit_code"], result["changed"], result["passed"], result["requests"]) == (0, True, True, 7)
    assert "report" not in result
    assert not reports.exists()


def test_a_baseline_file_from_another_suite_is_refused(evaluate, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"suite": "tiny-chat", "model": "x", "score": 1, "latency": {}}))
    result = evaluate(model="lab-chat:v2", baseline=str(other))
    assert result["exit_code"] == 1
    assert result["msg"] == ("baseline %s was made with suite 'tiny-chat', this run uses suite 'lab-chat'; give a "
                             "baseline from the same suite" % other)


def test_injected_server_errors_count_as_failed_repetitions(evaluate, faults, tmp_path, engine):
    faults.update({"error_rate": 0.25})
    result = evaluate(model="lab-chat:v1", suite=write_suite(tmp_path, ONE_CASE_SUITE), repetitions=None)
    assert result["exit_code"] == 0, result
    # The warm-up is request 1; requests 4 and 8 of the engine fail: the 3rd and the 7th repetition.
    assert (result["requests"], result["errors"], result["score"]) == (8, 2, 0.75)
    case = result["cases"][0]
    assert (case["passed_repetitions"], [failure["repetition"] for failure in case["failures"]]) == (6, [3, 7])
    assert case["failures"][0] == {
        "repetition": 3, "check": "request", "answer": "",
        "message": "POST %s/api/chat returned HTTP 500: lab fault: injected inference error" % engine.url}
    assert result["reasons"] == ["score 0.75 is below min_score 0.9 (2 of 8 requests failed)"]


def test_a_request_slower_than_the_suite_timeout_is_a_failed_repetition(evaluate, tmp_path, engine):
    suite = write_suite(tmp_path, ONE_CASE_SUITE.replace("warmup: 1}", "warmup: 0, timeout: 0.1}"))
    result = evaluate(model="lab-chat:bad", suite=suite, repetitions=2)
    assert (result["exit_code"], result["requests"], result["errors"], result["score"]) == (0, 2, 2, 0.0)
    # The suite's timeout (0.1 s) is below the module's (30 s), so it is the read timeout too: lab-chat:bad takes
    # 0.25 s to its first token, and longer to its headers when it still has to be loaded.
    assert re.fullmatch(r"POST %s/api/chat: no (data for 0\.1s in the middle of the stream after 0 lines; the server "
                        r"may be hung|answer within the read timeout of 0\.1s\. .*)" % re.escape(engine.url),
                        result["cases"][0]["failures"][0]["message"])
    assert result["reasons"] == ["score 0 is below min_score 0.9 (2 of 2 requests failed)",
                                 "none of the 2 requests to lab-chat:bad succeeded; see the failures of each case"]
    assert result["latency"]["total_seconds"] == {"p50": None, "p95": None, "max": None}


def test_the_openai_engine_evaluates_through_the_v1_routes(evaluate):
    result = evaluate(engine="openai", model="lab-chat:v2", baseline_model="lab-chat:v1")
    assert result["exit_code"] == 0, result
    assert (result["engine"], result["passed"], result["score"], result["errors"]) == ("openai", True, 1.0, 0)
    assert result["cases"][-1]["passed_repetitions"] == 1  # tokens counted from the streamed usage
    assert result["comparison"]["latency_ratio"] < 1.0
    assert result["comparison"]["tokens_per_second_ratio"] > 1.3


@pytest.mark.parametrize(("engine_name", "message"), [
    ("ollama", "model lab-chat:v9 is not on the Ollama server at {url} (it has: lab-chat:bad, lab-chat:v1, "
               "lab-chat:v2). Pull it first, for example with namtech.internal_ai.ollama_model"),
    ("openai", "model lab-chat:v9 is not served by {url} (it serves: lab-chat:bad, lab-chat:v1, lab-chat:v2). "
               "Check the name the server serves it under (vLLM's --served-model-name)"),
])
def test_a_model_the_server_does_not_have_fails(evaluate, engine, engine_name, message):
    result = evaluate(engine=engine_name, model="lab-chat:v9")
    assert (result["exit_code"], result["msg"]) == (1, message.format(url=engine.url))


def test_a_missing_baseline_model_fails(evaluate, engine):
    result = evaluate(model="lab-chat:v1", baseline_model="lab-chat:v0")
    assert result["exit_code"] == 1
    assert result["msg"].startswith("model lab-chat:v0 is not on the Ollama server at %s" % engine.url)


def test_the_baseline_model_may_live_on_another_server(evaluate, engine):
    other = engine.url + "/"  # another address of the same engine: a second client, as for a second vLLM node
    result = evaluate(model="lab-chat:v2", baseline_model="lab-chat:v1", baseline_url=other)
    assert (result["exit_code"], result["passed"]) == (0, True)
    assert (result["url"], result["baseline"]["url"]) == (engine.url, other)


def test_an_unreachable_baseline_server_fails_before_measuring(evaluate, engine):
    other = "http://127.0.0.1:%d" % free_port()
    result = evaluate(model="lab-chat:v2", baseline_model="lab-chat:v1", baseline_url=other, retries=0)
    assert result["exit_code"] == 1
    assert result["msg"].startswith("GET %s/api/tags: cannot connect (" % other)


def test_an_unreachable_server_fails_with_what_to_check(run_module):
    url = "http://127.0.0.1:%d" % free_port()
    result = run_module(llm_eval, {"url": url, "suite": LAB_SUITE, "model": "lab-chat:v1", "retries": 0})
    assert result["exit_code"] == 1
    assert result["msg"].startswith("GET %s/api/tags: cannot connect (" % url)
    assert result["msg"].endswith("Check that the service runs and listens on this address and that no firewall "
                                  "blocks it")


def test_a_malformed_suite_fails_with_the_file_case_and_field(evaluate, tmp_path):
    suite = write_suite(tmp_path, ONE_CASE_SUITE.replace("{contains: Paris}", "{contain: Paris}"))
    result = evaluate(model="lab-chat:v1", suite=suite)
    assert result["exit_code"] == 1
    assert result["msg"] == (
        "suite %s: cases[0] (id 'capital'), field 'checks[0]': unknown check 'contain'; known checks: contains, "
        "equals, json_schema, max_seconds, max_ttft_seconds, min_tokens, min_tokens_per_second, not_contains, regex. "
        "Fix the suite and run the task again" % suite)


def test_a_missing_suite_file_fails(evaluate, tmp_path):
    missing = str(tmp_path / "nope.yml")
    result = evaluate(model="lab-chat:v1", suite=missing)
    assert result["exit_code"] == 1
    assert result["msg"] == ("suite %s: the file: cannot be read: [Errno 2] No such file or directory: '%s'. Fix the "
                             "suite and run the task again" % (missing, missing))


def test_json_schema_checks_need_jsonschema(evaluate, tmp_path, monkeypatch):
    monkeypatch.setattr(llm_eval, "HAS_JSONSCHEMA", False)
    suite = write_suite(tmp_path, ONE_CASE_SUITE.replace("{contains: Paris}", "{json_schema: {type: object}}"))
    result = evaluate(model="lab-chat:v1", suite=suite)
    assert result["exit_code"] == 1
    assert result["msg"].startswith("Failed to import the required Python library (jsonschema) on ")
    assert "This is required for the json_schema checks of suite %s. " % suite in result["msg"]


def test_without_jsonschema_other_suites_still_run(evaluate, monkeypatch):
    monkeypatch.setattr(llm_eval, "HAS_JSONSCHEMA", False)
    assert evaluate(model="lab-chat:v1")["passed"] is True


@pytest.mark.parametrize(("args", "message"), [
    ({"min_score": 1.5}, "min_score must be between 0 and 1 (got 1.5)"),
    ({"max_score_drop": -0.1}, "max_score_drop must be between 0 and 1 (got -0.1)"),
    ({"max_latency_ratio": 0}, "max_latency_ratio must be greater than 0 (got 0.0)"),
    ({"repetitions": 0}, "repetitions must be between 1 and 1000 (got 0)"),
    ({"concurrency": 65}, "concurrency must be between 1 and 64 (got 65)"),
    ({"model": " "}, "model must not be empty"),
    ({"engine": "openai", "url": "http://127.0.0.1:8000/v1/"},
     "url must be the server root without /v1 (got http://127.0.0.1:8000/v1/); try http://127.0.0.1:8000"),
    ({"engine": "openai", "baseline_model": "lab-chat:v2", "baseline_url": "http://127.0.0.1:8001/v1"},
     "baseline_url must be the server root without /v1 (got http://127.0.0.1:8001/v1); try http://127.0.0.1:8001"),
    ({"baseline_url": "http://127.0.0.1:8001"}, "missing parameter(s) required by 'baseline_url': baseline_model"),
    ({"baseline_model": "lab-chat:v1", "baseline": "/tmp/x.json"},
     "parameters are mutually exclusive: baseline_model|baseline"),
])
def test_bad_arguments(evaluate, args, message):
    result = evaluate(**dict({"model": "lab-chat:v1"}, **args))
    assert (result["exit_code"], result["msg"]) == (1, message)
