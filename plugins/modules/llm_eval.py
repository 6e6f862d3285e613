# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: llm_eval
short_description: Evaluate a model on an Ollama or OpenAI-compatible server with a suite of cases
version_added: 0.1.0
description:
  - Runs an evaluation suite (a YAML file of prompts and checks) against O(model) on an Ollama server or an
    OpenAI-compatible server such as vLLM, scores the answers, measures latency and throughput, and says whether
    the model passes the suite's thresholds.
  - Compares the model with a baseline, either O(baseline_model) evaluated in the same run (recommended, as the
    requests of both models are interleaved, so machine noise hits both alike) or an earlier result file
    (O(baseline)).
  - Every request is streamed. The time to first token (TTFT) is the time until the first chunk with non-empty
    content. Tokens per second come from Ollama's C(eval_count) and C(eval_duration); on an OpenAI-compatible
    server the module asks for usage in the stream (C(stream_options.include_usage)) and, when the server sends
    none, counts one token per content chunk and divides the tokens after the first by the time after the first.
  - Every case is sent as a chat request (C(/api/chat) or C(/v1/chat/completions)); a case's C(prompt) is one
    user message, after the case's system message if it has one.
  - A request that fails (HTTP error, timeout, broken stream) fails its repetition and is counted in RV(errors);
    it does not stop the evaluation. The module fails only when the suite or the options are wrong, the server
    or the model cannot be found, or no request could even connect.
  - "The suite format is described in the collection's C(docs/evaluation.md). In short: C(name), C(description),
    C(defaults) (C(repetitions), C(concurrency), C(warmup), C(timeout), C(system), C(options)), C(thresholds)
    (C(min_score), C(max_score_drop), C(max_latency_ratio), C(max_ttft_ratio)) and C(cases), each with an C(id),
    a C(prompt) or C(messages), optional C(system), C(weight), C(repetitions), C(options) and C(checks):
    C(contains), C(not_contains), C(equals), C(regex) (case-insensitive unless C(ignore_case: false)),
    C(json_schema), C(min_tokens), C(max_ttft_seconds), C(max_seconds), C(min_tokens_per_second)."
  - A repetition passes when every check of its case holds. A case scores the fraction of its repetitions that
    pass; the suite's score is the mean of the case scores weighted by C(weight).
author:
  - Namtech platform engineering (@namtech)
options:
  suite:
    description:
      - Path of the suite file on the host that runs the module (the controller with C(delegate_to=localhost)).
      - A suite that cannot be read or is malformed fails the module with the file, the case and the field at fault.
    type: path
    required: true
  model:
    description:
      - The model to evaluate, as the server knows it (an Ollama name such as C(lab-chat:v2), a tag defaulting to
        C(latest); vLLM's served model name).
    type: str
    required: true
  engine:
    description:
      - The server's API. V(ollama) uses C(/api/chat); V(openai) uses C(/v1/chat/completions) (vLLM, or Ollama's
        C(/v1) routes).
    type: str
    choices: [ollama, openai]
    default: ollama
  url:
    description:
      - Root URL of the server, without C(/v1).
      - Defaults to V(http://127.0.0.1:11434) with O(engine=ollama) and V(http://127.0.0.1:8000) with O(engine=openai).
    type: str
  baseline_model:
    description:
      - A second model evaluated in the same run with the same cases, its requests interleaved with those of O(model).
      - Mutually exclusive with O(baseline).
    type: str
  baseline_url:
    description:
      - Root URL of the server that serves O(baseline_model), when it is not O(url) (a vLLM server serves one model,
        so the baseline often runs on another node or port). The connection options apply to both servers.
    type: str
  baseline:
    description:
      - Path of the JSON report of an earlier run of the same suite (written to O(report_dir)), used as the baseline.
        Its figures were measured at another time, possibly under another load; O(baseline_model) is fairer.
      - Mutually exclusive with O(baseline_model).
    type: path
  min_score:
    description:
      - Reject the model when its score (0 to 1) is below this. Overrides the suite's C(thresholds.min_score);
        without either, 0.9.
    type: float
  max_score_drop:
    description:
      - Reject the model when its score is lower than the baseline's by more than this. Overrides the suite's
        C(thresholds.max_score_drop); without either, 0.05. Only with a baseline.
    type: float
  max_latency_ratio:
    description:
      - Reject the model when the 95th percentile of its total request time (first byte sent to last chunk
        received, successful requests only) is more than this many times the baseline's. Overrides the suite's
        C(thresholds.max_latency_ratio); without either, 1.5. Only with a baseline.
    type: float
  max_ttft_ratio:
    description:
      - Reject the model when the 95th percentile of its time to first token is more than this many times the
        baseline's. Overrides the suite's C(thresholds.max_ttft_ratio); without either, not checked.
        Only with a baseline.
    type: float
  repetitions:
    description:
      - Run every case this many times (1 to 1000), instead of the repetitions the suite sets.
    type: int
  concurrency:
    description:
      - Requests in flight at once (1 to 64), instead of the suite's C(defaults.concurrency).
        With a baseline model the requests of both models share them.
    type: int
  report_dir:
    description:
      - Directory (created when missing) where the module writes C(<suite>-<model>-<UTC timestamp>.json) (the
        result, usable as O(baseline) later) and a Markdown report C(.md) beside it. Files are written atomically.
    type: path
  fail_on_reject:
    description:
      - When the model does not pass, V(false) returns RV(passed=false) and the RV(reasons) for the playbook to act
        on; V(true) fails the task with the reasons (the reports are written first).
    type: bool
    default: false
extends_documentation_fragment:
  - namtech.internal_ai.api
attributes:
  check_mode:
    support: full
    description:
      - The evaluation only reads from the server, so it runs in check mode too. No report is written; the task
        reports a change when O(report_dir) is set, because a real run would write one.
  diff_mode:
    support: none
    description: Nothing on the server changes, so there is nothing to diff.
notes:
  - Before measuring, each model answers C(defaults.warmup) unmeasured requests (1 unless the suite says otherwise)
    so that loading a model into memory does not count against it.
  - The read timeout (O(timeout)) used is the smaller of O(timeout) and the suite's C(defaults.timeout), which
    also bounds each whole answer.
  - Percentiles interpolate linearly between the closest ranks (numpy's default).
  - C(json_schema) checks need the Python library C(jsonschema) on the host that runs the module; other suites do
    not. Reading suites needs C(PyYAML).
seealso:
  - module: namtech.internal_ai.ollama_model
  - module: namtech.internal_ai.openai_info
requirements:
  - PyYAML
  - jsonschema (only for suites with json_schema checks)
"""

EXAMPLES = r"""
- name: Evaluate the candidate against the version in service, interleaved on the staging node
  namtech.internal_ai.llm_eval:
    url: "http://{{ ansible_host }}:11434"
    suite: "{{ playbook_dir }}/evals/assistant.yml"
    model: llama3.2:3b-v2
    baseline_model: llama3.2:3b-v1
    report_dir: /var/lib/namtech/evals
  delegate_to: localhost
  register: evaluation

- name: Stop the rollout when the candidate is worse
  ansible.builtin.fail:
    msg: "{{ evaluation.model }} rejected: {{ evaluation.reasons | join('; ') }}"
  when: not evaluation.passed

- name: Compare a vLLM canary with the node still in service, failing the task on a rejection
  namtech.internal_ai.llm_eval:
    engine: openai
    url: "http://{{ canary_host }}:8000"
    baseline_url: "http://{{ serving_host }}:8000"
    api_token: "{{ vllm_api_key }}"
    suite: evals/tiny-chat.yml
    model: assistant
    baseline_model: assistant
    max_latency_ratio: 1.3
    fail_on_reject: true
  delegate_to: localhost

- name: Judge against the report of the last accepted run
  namtech.internal_ai.llm_eval:
    suite: evals/assistant.yml
    model: assistant
    baseline: /var/lib/namtech/evals/assistant-assistant_latest-20261127T101500Z.json
    repetitions: 5
"""

RETURN = r"""
passed:
  description: Whether the model passes every threshold.
  returned: success
  type: bool
  sample: false
reasons:
  description: Why the model does not pass, one sentence each; empty when it passes.
  returned: success
  type: list
  elements: str
  sample:
    - score 0 is below min_score 0.9
    - >-
      p95 total latency 1.006 s is 5.33 times that of the baseline lab-chat:v1 (0.189 s), more than
      max_latency_ratio 1.5
suite:
  description: The suite's name.
  returned: success
  type: str
  sample: lab-chat
suite_path:
  description: The suite file.
  returned: success
  type: str
model:
  description: The evaluated model (for Ollama with its tag).
  returned: success
  type: str
  sample: lab-chat:v2
engine:
  description: The API used, V(ollama) or V(openai).
  returned: success
  type: str
url:
  description: The server asked.
  returned: success
  type: str
score:
  description: The weighted mean of the case scores, from 0 to 1.
  returned: success
  type: float
  sample: 1.0
cases:
  description: Per case, in the suite's order.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The case's id.
      type: str
    weight:
      description: The case's weight in the score.
      type: float
    repetitions:
      description: How many times the case ran.
      type: int
    passed_repetitions:
      description: How many of them passed every check.
      type: int
    score:
      description: RV(cases[].passed_repetitions) / RV(cases[].repetitions).
      type: float
    failures:
      description: >-
        The first failures (five at most): C(repetition) (from 1), C(check) (the check's name, or C(request)
        when the request itself failed), C(message), and C(answer) (the start of the answer).
      type: list
      elements: dict
latency:
  description: Latency of the successful requests, in seconds.
  returned: success
  type: dict
  contains:
    ttft_seconds:
      description: Time to first token, C(p50), C(p95), C(max).
      type: dict
    total_seconds:
      description: Time to the end of the answer, C(p50), C(p95), C(max).
      type: dict
  sample: {"ttft_seconds": {"p50": 0.031, "p95": 0.034, "max": 0.035},
           "total_seconds": {"p50": 0.079, "p95": 0.19, "max": 0.192}}
tokens_per_second:
  description: Generation speed of the successful requests, C(p50) and C(mean); null when unknown.
  returned: success
  type: dict
  sample: {"p50": 171.3, "mean": 168.9}
requests:
  description: Measured requests sent for the model (warm-up requests not included).
  returned: success
  type: int
errors:
  description: How many of them failed (HTTP error, timeout, broken stream).
  returned: success
  type: int
thresholds:
  description: The thresholds applied, after the module options and the suite's own; null means not checked.
  returned: success
  type: dict
  sample: {"min_score": 0.9, "max_score_drop": 0.05, "max_latency_ratio": 1.5, "max_ttft_ratio": null}
baseline:
  description: >-
    The baseline's summary with the same keys as the model's (C(model), C(score), C(cases), C(latency),
    C(tokens_per_second), C(requests), C(errors)) and C(source) (V(model) or V(file)), with C(url) for a model
    and C(path) and C(started_at) for a file.
  returned: when O(baseline_model) or O(baseline) is given
  type: dict
comparison:
  description: >-
    C(score_drop) (baseline score minus the model's), C(latency_ratio) (p95 total seconds, model / baseline),
    C(ttft_ratio) (p95 time to first token, model / baseline), C(tokens_per_second_ratio) (mean, model / baseline);
    null when a figure is missing.
  returned: when O(baseline_model) or O(baseline) is given
  type: dict
  sample: {"score_drop": 0.0, "latency_ratio": 0.52, "ttft_ratio": 0.5, "tokens_per_second_ratio": 1.95}
started_at:
  description: When the evaluation started, UTC, ISO 8601.
  returned: success
  type: str
duration_seconds:
  description: How long the evaluation took, warm-up included.
  returned: success
  type: float
report:
  description: The paths of the reports written, C(json) and C(markdown).
  returned: when O(report_dir) is given, except in check mode
  type: dict
  sample: {"json": "/var/lib/namtech/evals/lab-chat-lab-chat_v2-20261127T101500Z.json",
           "markdown": "/var/lib/namtech/evals/lab-chat-lab-chat_v2-20261127T101500Z.md"}
"""

import contextlib
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.namtech.internal_ai.plugins.module_utils.api_module import (
    API_MUTUALLY_EXCLUSIVE,
    API_REQUIRED_BY,
    api_argument_spec,
    fail_with_api_error,
    http_client_from_module,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.evaluation import (
    HAS_JSONSCHEMA,
    HAS_YAML,
    JSONSCHEMA_IMPORT_ERROR,
    MAX_CONCURRENCY,
    MAX_REPETITIONS,
    YAML_IMPORT_ERROR,
    BaselineError,
    EvaluationAborted,
    OllamaTarget,
    OpenAITarget,
    Settings,
    SuiteError,
    effective_thresholds,
    evaluate,
    judge,
    load_baseline,
    load_suite,
    render_markdown,
    report_basename,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.files import (
    fail_on_nul_bytes_in_paths,
    write_atomically,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import DEFAULT_URL as OLLAMA_URL
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import OllamaClient
from ansible_collections.namtech.internal_ai.plugins.module_utils.openai import DEFAULT_URL as OPENAI_URL
from ansible_collections.namtech.internal_ai.plugins.module_utils.openai import OpenAIClient, v1_suffix_error

ENGINES = {"ollama": (OLLAMA_URL, OllamaClient, OllamaTarget), "openai": (OPENAI_URL, OpenAIClient, OpenAITarget)}
THRESHOLD_OPTIONS = ("min_score", "max_score_drop", "max_latency_ratio", "max_ttft_ratio")


def check_params(module):
    params = module.params
    for name in ("model", "baseline_model"):
        if params[name] is not None and not params[name].strip():
            module.fail_json(msg="%s must not be empty" % name)
    for name in ("min_score", "max_score_drop"):
        if params[name] is not None and not 0.0 <= params[name] <= 1.0:
            module.fail_json(msg="%s must be between 0 and 1 (got %s)" % (name, params[name]))
    for name in ("max_latency_ratio", "max_ttft_ratio"):
        if params[name] is not None and params[name] <= 0:
            module.fail_json(msg="%s must be greater than 0 (got %s)" % (name, params[name]))
    if params["repetitions"] is not None and not 1 <= params["repetitions"] <= MAX_REPETITIONS:
        module.fail_json(msg="repetitions must be between 1 and %d (got %d)" % (MAX_REPETITIONS, params["repetitions"]))
    if params["concurrency"] is not None and not 1 <= params["concurrency"] <= MAX_CONCURRENCY:
        module.fail_json(msg="concurrency must be between 1 and %d (got %d)" % (MAX_CONCURRENCY, params["concurrency"]))
    if params["engine"] == "openai":
        for name in ("url", "baseline_url"):
            message = v1_suffix_error(name, params[name])
            if message:
                module.fail_json(msg=message)


def read_suite(module):
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
    try:
        suite = load_suite(module.params["suite"])
    except SuiteError as exc:
        module.fail_json(msg="%s. Fix the suite and run the task again" % exc)
    if suite.uses_json_schema and not HAS_JSONSCHEMA:
        module.fail_json(msg=missing_required_lib("jsonschema", reason="for the json_schema checks of suite %s"
                                                  % suite.path), exception=JSONSCHEMA_IMPORT_ERROR)
    return suite


def open_targets(module, stack, suite):
    """``{"candidate": target, "baseline": target}`` (without a baseline model, only the candidate)."""
    params = module.params
    default_url, client_class, target_class = ENGINES[params["engine"]]
    url = params["url"] or default_url
    timeout = min(params["timeout"], suite.defaults["timeout"])
    http = stack.enter_context(http_client_from_module(module, url=url, read_timeout=timeout))
    targets = {"candidate": target_class(client_class(http), params["model"])}
    if params["baseline_model"]:
        baseline_url = params["baseline_url"] or url
        if baseline_url != url:
            http = stack.enter_context(http_client_from_module(module, url=baseline_url, read_timeout=timeout))
        targets["baseline"] = target_class(client_class(http), params["baseline_model"])
    return targets


def check_models_served(module, targets):
    for target in targets.values():
        try:
            message = target.missing_model_message()
        except ApiError as exc:
            fail_with_api_error(module, exc)
        if message:
            module.fail_json(msg=message)


def run(module, suite):
    params = module.params
    settings = Settings(suite, repetitions=params["repetitions"], concurrency=params["concurrency"])
    started = time.time()
    with contextlib.ExitStack() as stack:
        targets = open_targets(module, stack, suite)
        check_models_served(module, targets)
        try:
            summaries = evaluate(suite, targets, settings)
        except EvaluationAborted as exc:
            module.fail_json(msg="%s. Check that the server runs and that nothing between here and it blocks the "
                                 "requests" % exc)
    candidate = targets["candidate"]
    result = dict(summaries["candidate"], suite=suite.name, suite_path=suite.path, engine=params["engine"],
                  url=candidate.url, started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                  duration_seconds=round(time.time() - started, 3))
    if "baseline" in targets:
        result["baseline"] = dict(summaries["baseline"], source="model", url=targets["baseline"].url)
    return result, started


def baseline_from_file(module, suite):
    try:
        return load_baseline(module.params["baseline"], suite.name)
    except BaselineError as exc:
        module.fail_json(msg=str(exc))


def write_report(module, directory, name, text):
    path = os.path.join(directory, name)
    try:
        write_atomically(path, text, move=module.atomic_move)
    except OSError as exc:
        module.fail_json(msg="cannot write the report %s: %s. Check that the directory is writable" % (path, exc))
    return path


def write_reports(module, result, started):
    directory = module.params["report_dir"]
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        module.fail_json(msg="cannot create report_dir %s: %s" % (directory, exc), **result)
    base = report_basename(result["suite"], result["model"], started)
    document = json.dumps(result, indent=2, sort_keys=True) + "\n"
    return {
        "json": write_report(module, directory, base + ".json", document),
        "markdown": write_report(module, directory, base + ".md", render_markdown(result)),
    }


def main():
    argument_spec = api_argument_spec(None)
    argument_spec.update(
        suite=dict(type="path", required=True),
        model=dict(type="str", required=True),
        engine=dict(type="str", choices=list(ENGINES), default="ollama"),
        baseline_model=dict(type="str"),
        baseline_url=dict(type="str"),
        baseline=dict(type="path"),
        min_score=dict(type="float"),
        max_score_drop=dict(type="float"),
        max_latency_ratio=dict(type="float"),
        max_ttft_ratio=dict(type="float"),
        repetitions=dict(type="int"),
        concurrency=dict(type="int"),
        report_dir=dict(type="path"),
        fail_on_reject=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[*API_MUTUALLY_EXCLUSIVE, ("baseline_model", "baseline")],
        required_by=dict(API_REQUIRED_BY, baseline_url="baseline_model"),
        supports_check_mode=True,
    )
    fail_on_nul_bytes_in_paths(module)
    check_params(module)
    suite = read_suite(module)
    baseline = baseline_from_file(module, suite) if module.params["baseline"] else None
    result, started = run(module, suite)
    baseline = result.get("baseline", baseline)
    thresholds = effective_thresholds(suite.thresholds, dict((name, module.params[name]) for name in THRESHOLD_OPTIONS))
    reasons, comparison = judge(result, baseline, thresholds)
    result.update(passed=not reasons, reasons=reasons, thresholds=thresholds)
    if baseline is not None:
        result.update(baseline=baseline, comparison=comparison)
    changed = bool(module.params["report_dir"])
    if changed and not module.check_mode:
        result["report"] = write_reports(module, result, started)
    if module.params["fail_on_reject"] and reasons:
        module.fail_json(msg="%s is rejected by suite %s: %s" % (result["model"], suite.name, "; ".join(reasons)),
                         changed=changed, **result)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
