"""module_utils/evaluation.py without a server: suites, checks, scoring, statistics, verdicts, reports."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from ansible_collections.namtech.internal_ai.plugins.module_utils import evaluation
from ansible_collections.namtech.internal_ai.plugins.module_utils.evaluation import (
    BaselineError,
    EvaluationAborted,
    OllamaTarget,
    OpenAITarget,
    Sample,
    Settings,
    SuiteError,
    distribution,
    effective_thresholds,
    ensure_reachable,
    evaluate,
    format_number,
    judge,
    load_baseline,
    load_suite,
    parse_suite,
    percentile,
    plan_jobs,
    render_markdown,
    report_basename,
    score_case,
    summarize_model,
    weighted_score,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ConnectionFailed, HttpStatusError

EVALS = pathlib.Path(__file__).resolve().parents[1] / "lab" / "evals"


def suite_from(text, path="s.yml"):
    return parse_suite(__import__("yaml").safe_load(textwrap.dedent(text)), path)


def answer(text="", ttft=0.1, seconds=0.5, tokens=10, speed=50.0):
    return Sample(answer=text, ttft_seconds=ttft, seconds=seconds, tokens=tokens, tokens_per_second=speed)


def failed(message="POST /api/chat returned HTTP 500: boom", unreachable=False):
    return Sample(seconds=0.01, error=message, unreachable=unreachable)


def first_case_checks(checks_yaml):
    suite = suite_from("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: %s\n" % checks_yaml)
    return suite.cases[0].checks


def failures(checks_yaml, sample):
    return [check.failure(sample) for check in first_case_checks(checks_yaml)]


# -- statistics ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "fraction", "expected"), [
    ([1, 2, 3, 4], 0.5, 2.5),
    ([4, 1, 3, 2], 0.5, 2.5),
    ([1, 2, 3, 4, 5], 0.5, 3),
    ([1, 2, 3, 4, 5], 0.95, 4.8),
    (list(range(1, 101)), 0.95, 95.05),
    ([7], 0.95, 7),
    ([1, 2], 0.0, 1),
    ([1, 2], 1.0, 2),
    ([], 0.5, None),
])
def test_percentile_interpolates_between_the_closest_ranks(values, fraction, expected):
    assert percentile(values, fraction) == pytest.approx(expected) if expected is not None else \
        percentile(values, fraction) is None


def test_percentile_refuses_a_fraction_outside_0_to_1():
    with pytest.raises(ValueError, match=r"fraction must be between 0 and 1 \(got 95\)"):
        percentile([1, 2], 95)


def test_distribution_ignores_missing_values_and_rounds():
    assert distribution([0.123456, None, 0.2, 0.3]) == {"p50": 0.2, "p95": 0.29, "max": 0.3}
    assert distribution([]) == {"p50": None, "p95": None, "max": None}


@pytest.mark.parametrize(("value", "digits", "text"), [(0.9, 3, "0.9"), (1.0, 3, "1"), (0.16666, 3, "0.167"),
                                                       (5.2809, 2, "5.28"), (0, 3, "0"), (None, 3, "unknown")])
def test_numbers_read_as_a_person_writes_them(value, digits, text):
    assert format_number(value, digits) == text


# -- the shipped suites --------------------------------------------------------------------------------------

def test_the_lab_chat_suite_asks_the_six_reference_questions_and_a_latency_case():
    from lab.artifacts.models import REFERENCE_ANSWERS  # noqa: PLC0415

    suite = load_suite(str(EVALS / "lab-chat.yml"))
    assert suite.name == "lab-chat"
    questions = [case.messages[-1]["content"] for case in suite.cases[:6]]
    assert questions == list(REFERENCE_ANSWERS)
    assert suite.cases[0].messages[0] == {"role": "system", "content": "Answer in one short sentence."}
    assert [check.name for check in suite.cases[-1].checks] == [
        "min_tokens", "max_ttft_seconds", "min_tokens_per_second", "max_seconds"]
    assert suite.thresholds == {"min_score": 0.9, "max_score_drop": 0.05, "max_latency_ratio": 1.5}
    for case, reference in zip(suite.cases[:6], REFERENCE_ANSWERS.values(), strict=True):
        good = answer("... %s ..." % reference)
        assert [check.failure(good) for check in case.checks] == [None]


def test_the_tiny_chat_suite_asks_for_fixed_length_answers():
    suite = load_suite(str(EVALS / "tiny-chat.yml"))
    assert suite.name == "tiny-chat" and len(suite.cases) == 4
    assert suite.cases[0].options == {"max_tokens": 32, "temperature": 0, "ignore_eos": True}
    assert suite.cases[-1].options["max_tokens"] == 128
    assert [message["role"] for message in suite.cases[2].messages] == ["system", "user", "assistant", "user"]
    assert suite.defaults["warmup"] == 2


# -- malformed suites ----------------------------------------------------------------------------------------

GOOD_CASE = "  - id: ok\n    prompt: q\n    checks: [{contains: a}]\n"


@pytest.mark.parametrize(("text", "message"), [
    ("name: s\ncases:\n  - id: c\n    checks: [{contains: a}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'prompt': a case needs either prompt or messages"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    messages: [{role: user, content: q}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'messages': give either prompt or messages, not both"),
    ("name: s\ncases:\n" + GOOD_CASE + "  - id: c\n    prompt: q\n    checks: [{contain: a}]\n",
     "suite s.yml: cases[1] (id 'c'), field 'checks[0]': unknown check 'contain'; known checks: contains, equals, "
     "json_schema, max_seconds, max_ttft_seconds, min_tokens, min_tokens_per_second, not_contains, regex"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{regex: 'a(b'}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].regex': invalid regular expression 'a(b': missing ), "
     "unterminated subpattern at position 1"),
    ("name: s\ncases:\n" + GOOD_CASE + "  - id: x\n    prompt: q\n" + GOOD_CASE,
     "suite s.yml: cases[2] (id 'ok'), field 'id': duplicate id 'ok', already used by cases[0]"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    repetitions: three\n",
     "suite s.yml: cases[0] (id 'c'), field 'repetitions': must be an integer between 1 and 1000, got the string "
     "'three'"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    weight: 0\n",
     "suite s.yml: cases[0] (id 'c'), field 'weight': must be a number greater than 0, got the number 0"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{contains: 7}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].contains': must be a string, got the number 7 (quote it: '7')"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{equals: yes}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].equals': must be a string, got the boolean true (quote it: "
     "YAML reads yes, no, on, off, true and false as booleans)"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{contains: [a, 4]}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].contains[1]': must be a string, got the number 4 "
     "(quote it: '4')"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{not_contains: []}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].not_contains': must be a string or a non-empty list of "
     "strings, got an empty list"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{contains: a, regex: b}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0]': needs exactly one check per item, found contains, regex"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{max_seconds: 1, ignore_case: true}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].ignore_case': only applies to contains, not_contains, equals "
     "and regex"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{max_seconds: fast}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].max_seconds': must be a number greater than 0, got the string "
     "'fast'"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{json_schema: {type: objekt}}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks[0].json_schema': is not a valid JSON schema: 'objekt' is not "
     "valid under any of the given schemas"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: contains Paris\n",
     "suite s.yml: cases[0] (id 'c'), field 'checks': must be a list of checks, got the string 'contains Paris'"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    options: {stream: false}\n",
     "suite s.yml: cases[0] (id 'c'), field 'options.stream': is set by the module and cannot be an option"),
    ("name: s\ncases:\n  - id: c\n    prompt: q\n    promt: x\n",
     "suite s.yml: cases[0] (id 'c'), field 'promt': unknown field 'promt'; known fields: id, description, prompt, "
     "messages, system, weight, repetitions, options, checks"),
    ("name: s\ncases:\n  - id: c\n    messages: [{role: robot, content: hi}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'messages[0].role': must be one of system, user, assistant, got 'robot'"),
    ("name: s\ncases:\n  - id: c\n    messages: [{role: system, content: hi}]\n",
     "suite s.yml: cases[0] (id 'c'), field 'messages': needs at least one message with role user"),
    ("name: s\ncases:\n  - prompt: q\n", "suite s.yml: cases[0], field 'id': is required"),
    ("name: s\ncases:\n  - id: 3\n    prompt: q\n",
     "suite s.yml: cases[0], field 'id': must be a string, got the number 3 (quote it: '3')"),
    ("name: s\ncases:\n  - just a question\n",
     "suite s.yml: cases[0]: a case must be a mapping, got the string 'just a question'"),
    ("name: s\ncases: []\n", "suite s.yml: field 'cases': must be a non-empty list of cases, got a list"),
    ("cases:\n" + GOOD_CASE, "suite s.yml: field 'name': is required"),
    ("name: my suite\ncases:\n" + GOOD_CASE,
     "suite s.yml: field 'name': 'my suite' may only contain letters, digits, '.', '_' and '-' (it names report "
     "files)"),
    ("name: s\ncase:\n" + GOOD_CASE,
     "suite s.yml: field 'case': unknown field 'case'; known fields: name, description, defaults, thresholds, cases"),
    ("name: s\ndefaults: {concurrency: 100}\ncases:\n" + GOOD_CASE,
     "suite s.yml: field 'defaults.concurrency': must be an integer between 1 and 64, got the number 100"),
    ("name: s\ndefaults: {timeout: -1}\ncases:\n" + GOOD_CASE,
     "suite s.yml: field 'defaults.timeout': must be a number greater than 0, got the number -1"),
    ("name: s\nthresholds: {min_score: 90}\ncases:\n" + GOOD_CASE,
     "suite s.yml: field 'thresholds.min_score': must be a number between 0 and 1, got the number 90"),
    ("name: s\nthresholds: {max_latency: 2}\ncases:\n" + GOOD_CASE,
     "suite s.yml: field 'thresholds.max_latency': unknown field 'max_latency'; known fields: min_score, "
     "max_score_drop, max_latency_ratio, max_ttft_ratio"),
    ("- name: s\n", "suite s.yml: the file: must be a mapping, got a list"),
])
def test_a_malformed_suite_names_the_file_case_and_field(text, message):
    with pytest.raises(SuiteError) as caught:
        suite_from(text)
    assert str(caught.value) == message


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("name: s\ncases:\n  - id: c\n    prompt: [unclosed\n")
    with pytest.raises(SuiteError) as caught:
        load_suite(str(path))
    assert str(caught.value) == ("suite %s: line 5, column 1: invalid YAML: while parsing a flow sequence expected ',' "
                                 "or ']', but got '<stream end>'" % path)


def test_an_empty_suite_file_says_what_a_suite_needs(tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("# nothing yet\n")
    with pytest.raises(SuiteError) as caught:
        load_suite(str(path))
    assert str(caught.value) == "suite %s: the file: is empty; a suite needs at least a name and cases" % path


def test_defaults_and_case_settings_combine():
    suite = suite_from("""
        name: s
        defaults: {repetitions: 3, system: Be brief., options: {temperature: 0, max_tokens: 10}}
        cases:
          - id: a
            prompt: q
          - id: b
            prompt: q
            system: Be verbose.
            repetitions: 1
            weight: 2
            options: {max_tokens: 99}
          - id: c
            messages: [{role: system, content: Own.}, {role: user, content: q}]
    """)
    first, second, third = suite.cases
    assert (first.repetitions, first.weight, first.options) == (3, 1.0, {"temperature": 0, "max_tokens": 10})
    assert first.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}]
    assert (second.repetitions, second.weight, second.options) == (1, 2.0, {"temperature": 0, "max_tokens": 99})
    assert second.messages[0] == {"role": "system", "content": "Be verbose."}
    assert third.messages == [{"role": "system", "content": "Own."}, {"role": "user", "content": "q"}]
    assert (suite.defaults["warmup"], suite.defaults["timeout"], suite.defaults["concurrency"]) == (1, 60.0, 1)
    assert Settings(suite, repetitions=2).repetitions == [2, 2, 2]
    assert Settings(suite).repetitions == [3, 1, 3]


def test_a_suite_parses_without_jsonschema_and_says_it_needs_it(monkeypatch):
    monkeypatch.setattr(evaluation, "HAS_JSONSCHEMA", False)
    suite = suite_from("name: s\ncases:\n  - id: c\n    prompt: q\n    checks: [{json_schema: {type: objekt}}]\n")
    assert suite.uses_json_schema is True
    assert suite_from("name: s\ncases:\n" + GOOD_CASE).uses_json_schema is False


# -- checks --------------------------------------------------------------------------------------------------

def test_text_checks_ignore_case_unless_told_not_to():
    sample = answer("The capital of France is PARIS.")
    assert failures("[{contains: paris}, {contains: paris, ignore_case: false}]", sample) == [
        None, "the answer does not contain 'paris'"]
    assert failures("[{contains: [paris, Lyon, Nice]}]", sample) == ["the answer does not contain 'Lyon', 'Nice'"]
    assert failures("[{not_contains: [berlin, france]}]", sample) == ["the answer contains 'france'"]
    assert failures("[{regex: '^the .* paris\\.$'}, {regex: '^the', ignore_case: false}]", sample) == [
        None, "the answer does not match the regular expression '^the'"]


def test_equals_compares_the_whole_answer_without_surrounding_space():
    assert failures("[{equals: '4'}, {equals: four}]", answer("  4\n")) == [None, "the answer is not 'four'"]


def test_json_schema_parses_the_answer_even_in_a_code_fence():
    checks = "[{json_schema: {type: object, required: [city], properties: {city: {type: string}}}}]"
    assert failures(checks, answer('```json\n{"city": "Paris"}\n```')) == [None]
    assert failures(checks, answer('{"town": "Paris"}')) == [
        "the answer does not match the schema: 'city' is a required property (at the top level)"]
    assert failures(checks, answer('{"city": 3}')) == [
        "the answer does not match the schema: 3 is not of type 'string' (at city)"]
    assert failures(checks, answer("Paris")) == ["the answer is not JSON (Expecting value: line 1 column 1 (char 0))"]


def test_latency_and_token_checks():
    checks = "[{min_tokens: 5}, {max_ttft_seconds: 0.2}, {max_seconds: 1}, {min_tokens_per_second: 60}]"
    assert failures(checks, answer(tokens=5, ttft=0.2, seconds=1.0, speed=60)) == [None] * 4
    assert failures(checks, answer(tokens=4, ttft=0.25, seconds=1.5, speed=33.33)) == [
        "4 tokens generated, fewer than 5", "the first token came after 0.25 s, more than 0.2 s",
        "the answer took 1.5 s, more than 1 s", "33.3 tokens/s, fewer than 60"]
    assert failures(checks, answer(tokens=None, ttft=None, speed=None)) == [
        "unknown tokens generated, fewer than 5", "no content arrived, so there is no time to first token", None,
        "the generation speed is unknown (fewer than 2 tokens generated)"]


# -- scoring -------------------------------------------------------------------------------------------------

def scored_suite():
    return suite_from("""
        name: s
        cases:
          - id: capital
            prompt: q
            weight: 3
            checks: [{contains: Paris}]
          - id: fast
            prompt: q
            checks: [{max_seconds: 1}]
    """)


def test_a_case_scores_the_fraction_of_repetitions_that_pass_every_check():
    case = scored_suite().cases[0]
    result = score_case(case, [answer("Paris"), answer("Berlin"), failed(), answer("paris!")])
    assert result == {
        "id": "capital", "weight": 3.0, "repetitions": 4, "passed_repetitions": 2, "score": 0.5,
        "failures": [
            {"repetition": 2, "check": "contains", "message": "the answer does not contain 'Paris'",
             "answer": "Berlin"},
            {"repetition": 3, "check": "request", "message": "POST /api/chat returned HTTP 500: boom",
             "answer": ""},
        ],
    }


def test_only_the_first_failures_of_a_case_are_kept():
    result = score_case(scored_suite().cases[0], [answer("x" * 300)] * 8)
    assert result["passed_repetitions"] == 0 and len(result["failures"]) == 5
    assert result["failures"][0]["answer"] == "x" * 200 + "..."


def test_the_suite_score_weights_the_cases():
    assert weighted_score([{"weight": 3.0, "score": 0.5}, {"weight": 1.0, "score": 1.0}]) == 0.625


def test_a_model_summary_measures_successful_requests_only():
    suite = scored_suite()
    summary = summarize_model("m", suite.cases, [
        [answer("Paris", ttft=0.1, seconds=0.4, speed=100), failed()],
        [answer("x", ttft=0.3, seconds=1.2, speed=None)],
    ])
    assert (summary["model"], summary["score"], summary["requests"], summary["errors"]) == ("m", 0.375, 3, 1)
    assert summary["latency"] == {"ttft_seconds": {"p50": 0.2, "p95": 0.29, "max": 0.3},
                                  "total_seconds": {"p50": 0.8, "p95": 1.16, "max": 1.2}}
    assert summary["tokens_per_second"] == {"p50": 100.0, "mean": 100.0}


def test_requests_interleave_the_models_fairly():
    jobs = plan_jobs([2, 1], ["candidate", "baseline"])
    assert jobs == [("candidate", 0, 0), ("baseline", 0, 0), ("baseline", 1, 0), ("candidate", 1, 0),
                    ("candidate", 0, 1), ("baseline", 0, 1)]
    assert plan_jobs([1, 2], ["only"]) == [("only", 0, 0), ("only", 1, 0), ("only", 1, 1)]


# -- verdicts ------------------------------------------------------------------------------------------------

def summary(*, model="m", score=1.0, total_p95=0.2, ttft_p95=0.03, requests=10, errors=0, speed=100.0):
    return {
        "model": model, "score": score, "cases": [], "requests": requests, "errors": errors,
        "latency": {"ttft_seconds": {"p50": ttft_p95, "p95": ttft_p95, "max": ttft_p95},
                    "total_seconds": {"p50": total_p95, "p95": total_p95, "max": total_p95}},
        "tokens_per_second": {"p50": speed, "mean": speed},
    }


THRESHOLDS = {"min_score": 0.9, "max_score_drop": 0.05, "max_latency_ratio": 1.5, "max_ttft_ratio": 2.0}


def test_a_candidate_within_every_threshold_passes():
    reasons, comparison = judge(summary(score=0.95, total_p95=0.29), summary(model="base"), THRESHOLDS)
    assert reasons == []
    assert comparison == {"score_drop": 0.05, "latency_ratio": 1.45, "ttft_ratio": 1.0, "tokens_per_second_ratio": 1.0}


def test_every_threshold_the_candidate_misses_is_a_reason():
    candidate = summary(model="cand", score=0.5, total_p95=0.61, ttft_p95=0.1, errors=2, speed=25.0)
    reasons, comparison = judge(candidate, summary(model="base"), THRESHOLDS)
    assert reasons == [
        "score 0.5 is below min_score 0.9 (2 of 10 requests failed)",
        "score 0.5 is 0.5 below the score 1 of the baseline base, more than max_score_drop 0.05",
        "p95 total latency 0.61 s is 3.05 times that of the baseline base (0.2 s), more than max_latency_ratio 1.5",
        "p95 time to first token 0.1 s is 3.33 times that of the baseline base (0.03 s), more than max_ttft_ratio 2",
    ]
    assert comparison["tokens_per_second_ratio"] == 0.25


def test_without_a_baseline_only_the_score_counts():
    assert judge(summary(score=0.8, total_p95=9), None, THRESHOLDS) == (["score 0.8 is below min_score 0.9"], None)


def test_missing_latency_fails_closed():
    dead_baseline = summary(model="base", total_p95=None, ttft_p95=None, errors=10)
    reasons, comparison = judge(summary(), dead_baseline, dict(THRESHOLDS, max_score_drop=None))
    assert reasons == [
        "p95 total latency cannot be compared with the baseline base: no request to the baseline base succeeded",
        "p95 time to first token cannot be compared with the baseline base: no request to the baseline base "
        "succeeded",
    ]
    assert comparison["latency_ratio"] is None


def test_a_candidate_without_any_answer_is_rejected_even_without_thresholds():
    dead = summary(score=0.0, total_p95=None, ttft_p95=None, errors=10)
    off = {"min_score": None, "max_score_drop": None, "max_latency_ratio": 1.5, "max_ttft_ratio": None}
    reasons, _comparison = judge(dead, summary(model="base"), off)
    assert reasons == ["none of the 10 requests to m succeeded; see the failures of each case"]


def test_thresholds_come_from_options_then_the_suite_then_the_defaults():
    assert effective_thresholds({}, {}) == {"min_score": 0.9, "max_score_drop": 0.05, "max_latency_ratio": 1.5,
                                            "max_ttft_ratio": None}
    suite_thresholds = {"min_score": 1.0, "max_latency_ratio": None}
    overrides = {"min_score": 0.5, "max_ttft_ratio": None, "max_score_drop": 0.2}
    assert effective_thresholds(suite_thresholds, overrides) == {
        "min_score": 0.5, "max_score_drop": 0.2, "max_latency_ratio": None, "max_ttft_ratio": None}


# -- baselines from files ------------------------------------------------------------------------------------

def test_a_report_serves_as_a_baseline(tmp_path):
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(dict(summary(model="lab-chat:v1", score=1), suite="lab-chat",
                                    started_at="2026-11-27T10:00:00Z", passed=True)))
    baseline = load_baseline(str(path), "lab-chat")
    assert (baseline["model"], baseline["score"], baseline["source"], baseline["path"]) == (
        "lab-chat:v1", 1.0, "file", str(path))
    assert baseline["latency"]["total_seconds"]["p95"] == 0.2 and baseline["started_at"] == "2026-11-27T10:00:00Z"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "baseline {path} is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                  "(char 1)); give the JSON report an earlier run wrote to report_dir"),
    ('{"changed": false}', "baseline {path} is not a result of llm_eval (it has no 'score' and 'latency' fields); "
                           "give the JSON report an earlier run wrote to report_dir"),
    ('{"suite": "s", "model": "m", "score": 1, "latency": {"ttft_seconds": {}}}',
     "baseline {path} is not a complete llm_eval result (KeyError: 'p50'); give the JSON report an earlier run "
     "wrote to report_dir"),
])
def test_an_unusable_baseline_file_says_why(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BaselineError) as caught:
        load_baseline(str(path), "s")
    assert str(caught.value) == message.format(path=path)


def test_a_missing_baseline_file_is_named(tmp_path):
    with pytest.raises(BaselineError, match=r"^cannot read baseline .*nope\.json: \[Errno 2\]"):
        load_baseline(str(tmp_path / "nope.json"), "s")


# -- reports -------------------------------------------------------------------------------------------------

def test_report_names_are_safe_file_names():
    assert report_basename("lab-chat", "registry.example.com:5000/team/model:v2", 0) == (
        "lab-chat-registry.example.com_5000_team_model_v2-19700101T000000Z")


def test_the_markdown_report_shows_verdict_reasons_figures_and_failures():
    case = {"id": "capital|x", "weight": 1.0, "repetitions": 2, "passed_repetitions": 1, "score": 0.5,
            "failures": [{"repetition": 2, "check": "contains", "message": "the answer does not contain 'Paris'",
                          "answer": "Use `Berlin`"}]}
    result = dict(summary(model="cand", score=0.5), cases=[case], suite="s", passed=False,
                  reasons=["score 0.5 is below min_score 0.9"], engine="ollama", url="http://h:11434",
                  started_at="2026-11-27T10:00:00Z", duration_seconds=2.5, thresholds=THRESHOLDS,
                  baseline=dict(summary(model="base"), source="model", cases=[dict(case, score=1.0)]),
                  comparison={"score_drop": 0.5, "latency_ratio": 1.0, "ttft_ratio": 1.0,
                              "tokens_per_second_ratio": 1.0})
    markdown = render_markdown(result)
    assert markdown.startswith("# Evaluation of cand with suite s\n\n**Rejected**\n")
    assert "- Baseline: base (run alongside)\n" in markdown
    assert "## Reasons\n\n- score 0.5 is below min_score 0.9\n" in markdown
    assert "| Total p50 / p95 / max (s) | 0.2 / 0.2 / 0.2 | 0.2 / 0.2 / 0.2 |" in markdown
    assert "| capital\\|x | 1 | 1/2 | 0.5 | 1 |" in markdown
    assert ("- `capital|x` repetition 2, contains: the answer does not contain 'Paris'. Answer: `Use 'Berlin'`"
            in markdown)


# -- measuring streams ---------------------------------------------------------------------------------------

class Clock:
    """Advances by ``step`` seconds every time it is read."""

    def __init__(self, step=0.1):
        self.now = 0.0
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


class FakeHttp:
    base_url = "http://fake"

    @staticmethod
    def url_for(path):
        return "http://fake" + path


class FakeClient:
    """Answers ``chat`` with the given events (or raises the given error)."""

    def __init__(self, events=(), error=None):
        self.http = FakeHttp()
        self.events = events
        self.error = error
        self.calls = []
        self.closed = False

    def chat(self, model, messages, **kwargs):
        self.calls.append(dict(kwargs, model=model, messages=messages))
        return self.stream()

    def stream(self):
        try:
            if self.error:
                raise self.error
            yield from self.events
        finally:
            self.closed = True


def ollama_events(parts, eval_count=None, eval_duration=None):
    events = [{"message": {"role": "assistant", "content": part}, "done": False} for part in parts]
    final = {"message": {"role": "assistant", "content": ""}, "done": True}
    if eval_count is not None:
        final.update(eval_count=eval_count, eval_duration=eval_duration)
    return [*events, final]


def test_ollama_answers_are_timed_from_the_first_content_and_counted_by_the_server():
    client = FakeClient(ollama_events(["", "The", " answer"], eval_count=2, eval_duration=int(0.05e9)))
    options = {"max_tokens": 5, "seed": 1}
    sample = OllamaTarget(client, "m", clock=Clock()).measure([{"role": "user", "content": "q"}], options, 60)
    assert sample.ok and sample.answer == "The answer"
    assert sample.ttft_seconds == pytest.approx(0.2)  # the empty chunk does not count as the first token
    assert (sample.tokens, sample.tokens_per_second) == (2, pytest.approx(40.0))
    assert client.calls[0]["options"] == {"num_predict": 5, "seed": 1} and client.calls[0]["model"] == "m:latest"


def test_an_ollama_stream_without_its_final_object_is_an_error():
    sample = OllamaTarget(FakeClient(ollama_events(["a"])[:-1]), "m", clock=Clock()).measure([], {}, 60)
    assert sample.error == "POST http://fake/api/chat: the stream ended without its final object ('done': true)"


def test_an_answer_longer_than_the_suite_timeout_is_cut_off():
    client = FakeClient(ollama_events(["a", "b", "c", "d"]))
    sample = OllamaTarget(client, "m", clock=Clock(step=1.0)).measure([], {}, 2.5)
    assert sample.error == "the answer was not complete after the suite's timeout of 2.5 s (2 content chunks received)"
    assert sample.answer == "ab" and client.closed is True


def test_openai_answers_use_the_streamed_usage_or_count_chunks():
    chunks = [{"choices": [{"delta": {"role": "assistant", "content": part}}]} for part in ("", "Hi", " there", "!")]
    with_usage = FakeClient([*chunks, {"choices": [], "usage": {"completion_tokens": 5}}])
    sample = OpenAITarget(with_usage, "m", clock=Clock()).measure([], {"max_tokens": 8, "ignore_eos": True}, 60)
    assert (sample.answer, sample.tokens, sample.ttft_seconds) == ("Hi there!", 5, pytest.approx(0.2))
    # 4 tokens after the first one, between the first content (t=0.3) and the end of the stream (t=0.8)
    assert sample.tokens_per_second == pytest.approx(4 / 0.5)
    assert with_usage.calls[0] == {"max_tokens": 8, "ignore_eos": True, "stream": True,
                                   "stream_options": {"include_usage": True}, "model": "m", "messages": []}
    without_usage = OpenAITarget(FakeClient(chunks), "m", clock=Clock()).measure([], {}, 60)
    assert without_usage.tokens == 3


def test_a_stream_that_breaks_the_format_is_an_error_and_is_closed():
    client = FakeClient([{"choices": [{"delta": {"content": "Hi"}}]}, ["not", "an", "object"], {"never": "read"}])
    sample = OpenAITarget(client, "m", clock=Clock()).measure([], {}, 60)
    assert sample.error == ("POST http://fake/v1/chat/completions sent an event that is not a JSON object: "
                            "['not', 'an', 'object']")
    assert (sample.answer, client.closed) == ("Hi", True)


def test_request_errors_become_failed_samples():
    refused = ConnectionFailed("POST http://fake/api/chat: cannot connect (refused) after 3 attempts")
    sample = OllamaTarget(FakeClient(error=refused), "m", clock=Clock()).measure([], {}, 60)
    assert (sample.ok, sample.unreachable, sample.error) == (False, True, str(refused))
    status = HttpStatusError("POST http://fake/v1/chat/completions returned HTTP 500: boom")
    sample = OpenAITarget(FakeClient(error=status), "m", clock=Clock()).measure([], {}, 60)
    assert (sample.ok, sample.unreachable) == (False, False)


def test_every_request_failing_to_connect_aborts_the_evaluation():
    target = OllamaTarget(FakeClient(), "m")
    with pytest.raises(EvaluationAborted) as caught:
        ensure_reachable(target, [[failed("cannot connect", unreachable=True)] * 2, [failed("x", unreachable=True)]])
    assert str(caught.value) == ("every one of the 3 requests to m:latest at http://fake failed to connect; the first "
                                 "error: cannot connect")
    ensure_reachable(target, [[failed("cannot connect", unreachable=True), failed()]])


def test_evaluate_warms_up_then_runs_every_repetition_of_every_model():
    suite = suite_from("""
        name: s
        defaults: {repetitions: 2, concurrency: 3, warmup: 1}
        cases:
          - id: a
            prompt: first
            checks: [{contains: "yes"}]
          - id: b
            prompt: second
            repetitions: 1
    """)
    clients = {"candidate": FakeClient(ollama_events(["yes"])), "baseline": FakeClient(ollama_events(["no"]))}
    targets = dict((key, OllamaTarget(client, key)) for key, client in clients.items())
    summaries = evaluate(suite, targets, Settings(suite))
    assert [len(client.calls) for client in clients.values()] == [4, 4]  # 1 warm-up + 3 measured each
    assert clients["candidate"].calls[0]["messages"] == [{"role": "user", "content": "first"}]
    assert (summaries["candidate"]["score"], summaries["baseline"]["score"]) == (1.0, 0.5)
    assert summaries["baseline"]["cases"][0]["passed_repetitions"] == 0
