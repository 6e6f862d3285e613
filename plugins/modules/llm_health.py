# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: llm_health
short_description: Health gate for a served model after a swap, from the engine's API and Prometheus
version_added: 0.1.0
description:
  - Runs one pass of checks against the engine that serves O(model) and fails when any of them fails, so a
    rollout stops (or rolls the node back) instead of sending traffic to a broken version.
  - The checks run in this order, each under its name in RV(checks).
  - C(engine) checks that the engine answers, and reports its version.
  - C(digest) (Ollama) checks that O(model) is on the server, at O(expected_digest) when given.
  - C(root) (OpenAI-compatible) checks that O(model) is served, from O(expected_root) when given.
  - C(loaded) (Ollama, O(require_loaded)) checks that the model is in memory, before any probe loads it.
  - C(warmup) (O(warmup=true)) sends one untimed request.
  - C(probe 1) to C(probe N) send O(probes) streamed chat requests, each timed to its first token and to its end.
  - C(prometheus NAME) compares the value of each O(prometheus_checks) query with its threshold.
  - Fails closed. When the engine does not answer, the checks that need it are reported as not run and count as
    failed; a Prometheus query without data fails.
  - Changes nothing, so it also runs in check mode. The probes do make the engine generate (O(probes) times up to
    O(max_tokens) tokens, plus one warm-up), which shows in its request and token metrics.
  - For retries, loop the task with C(until)/C(retries); each run is one pass.
author:
  - Namtech platform engineering (@namtech)
options:
  url:
    description:
      - Root URL of the engine's API (without C(/v1)).
      - Default V(http://127.0.0.1:11434) for O(engine=ollama) and V(http://127.0.0.1:8000) for O(engine=openai).
    type: str
  engine:
    description:
      - V(ollama) uses Ollama's own API (C(/api/...)); V(openai) an OpenAI-compatible server such as vLLM
        (C(/health), C(/version), C(/v1/models), C(/v1/chat/completions)).
    type: str
    choices: [ollama, openai]
    default: ollama
  model:
    description:
      - The served name to check, as clients call it, for example the Ollama alias V(assistant) or vLLM's
        C(--served-model-name).
    type: str
    required: true
  expected_digest:
    description:
      - With O(engine=ollama), the digest C(/api/tags) must list for O(model) (64 hex digits, with or without
        C(sha256:)), for example the digest M(namtech.internal_ai.ollama_model) returned for the new version.
    type: str
  expected_root:
    description:
      - With O(engine=openai), the C(root) C(/v1/models) must list for O(model). vLLM puts the path or repository
        it loaded the model from there.
    type: str
  require_loaded:
    description:
      - With O(engine=ollama), require C(/api/ps) to list the model (by name or digest) before the probes run.
      - Default V(true) for O(engine=ollama). vLLM loads its model at start, so O(engine=openai) takes no such
        check and V(true) is refused.
    type: bool
  probes:
    description:
      - How many streamed chat requests (0 to 100) must succeed, one after another. V(0) skips the probes (an
        embedding model).
      - A probe succeeds when its answer completes with some text within O(max_seconds) and its first token comes
        within O(max_ttft_seconds).
      - The probes stop at the first one that cannot reach the engine; the rest are reported as not run.
    type: int
    default: 3
  prompt:
    description:
      - The user message of each probe.
    type: str
    default: "Reply with one short sentence: are you ready to answer questions?"
  max_tokens:
    description:
      - The most tokens a probe may generate (Ollama's C(num_predict), OpenAI's C(max_tokens)).
    type: int
    default: 16
  max_seconds:
    description:
      - The longest a probe may take, from sending the request to the end of the answer. The module stops reading
        a probe that runs longer; a silent engine is bounded by O(timeout).
      - No limit when not given.
    type: float
  max_ttft_seconds:
    description:
      - The longest a probe may wait for its first token (the first chunk with text), time to first token.
      - No limit when not given. A model that is not loaded yet spends its load time here; load it first or set
        O(warmup=true).
    type: float
  warmup:
    description:
      - Send one untimed chat request before the probes, so they measure a loaded model. Counts as the check
        C(warmup).
    type: bool
    default: false
  prometheus_url:
    description:
      - Root URL of Prometheus, for O(prometheus_checks). Queried at C(/api/v1/query) with O(prometheus_username)
        and O(prometheus_password) when given (never with O(api_token), O(url_username) or O(client_cert), which
        are the engine's), and with the module's O(validate_certs), O(connect_timeout), O(timeout), O(retries) and
        O(use_proxy).
    type: str
  prometheus_username:
    description:
      - User for HTTP basic authentication to Prometheus, when its web configuration has users
        (C(prometheus_web_users) of the C(prometheus) role).
    type: str
  prometheus_password:
    description:
      - Its password. Never logged.
    type: str
  prometheus_ca_path:
    description:
      - PEM file of the CA that signed Prometheus's certificate, for an C(https://) O(prometheus_url). Without it,
        O(ca_path) applies, then the system's trust store.
    type: path
  prometheus_checks:
    description:
      - Instant queries whose value must compare with a threshold, for example the error ratio of the node over
        the last minutes. An empty result, a null at O(prometheus_checks[].path), or NaN is a failure.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - The check's name; it appears as C(prometheus NAME) in RV(checks). Unique within the list.
        type: str
        required: true
      query:
        description:
          - The PromQL expression.
        type: str
        required: true
      path:
        description:
          - A JMESPath expression that picks the value out of Prometheus' JSON answer.
          - The default takes the value of the first series of a vector result; use V(data.result[1]) for a scalar.
        type: str
        default: data.result[0].value[1]
      op:
        description:
          - How the value must compare with O(prometheus_checks[].value).
        type: str
        choices: ["<", "<=", ">", ">=", "==", "!="]
        required: true
      value:
        description:
          - The threshold.
        type: float
        required: true
extends_documentation_fragment:
  - namtech.internal_ai.api
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode runs it as usual (the probes still generate tokens).
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - jmespath (for O(prometheus_checks))
notes:
  - The probes use the chat API, so O(model) must have a chat template (vLLM refuses chat for a base model
    without one). Set O(probes=0) for a model that cannot chat.
seealso:
  - module: namtech.internal_ai.ollama_model
  - module: namtech.internal_ai.model_release
  - module: namtech.internal_ai.openai_info
"""

EXAMPLES = r"""
- name: Gate the node after repointing the alias
  namtech.internal_ai.llm_health:
    url: "http://{{ ansible_host }}:11434"
    model: assistant
    expected_digest: "{{ pulled.digest }}"
    probes: 3
    max_ttft_seconds: 2
    max_seconds: 20
    prometheus_url: "http://{{ groups['monitoring'][0] }}:9090"
    prometheus_checks:
      - name: error_ratio
        query: >-
          sum(rate(llm_requests_failed_total{instance="{{ inventory_hostname }}"}[5m]))
          / sum(rate(llm_requests_total{instance="{{ inventory_hostname }}"}[5m]))
        op: "<"
        value: 0.05
  register: gate

- name: Report the time to first token of each probe
  ansible.builtin.debug:
    msg: "{{ gate.checks | selectattr('name', 'match', 'probe') | map(attribute='value.ttft_seconds') | list }}"

- name: Gate on Prometheus behind basic auth and TLS
  namtech.internal_ai.llm_health:
    url: "http://{{ ansible_host }}:11434"
    model: assistant
    prometheus_url: "https://{{ hostvars[groups['monitoring'][0]].ansible_host }}:9090"
    prometheus_username: "{{ monitoring_web_username }}"
    prometheus_password: "{{ monitoring_web_password }}"
    prometheus_ca_path: /etc/prometheus/node-exporter-web/web-ca.pem
    prometheus_checks:
      - name: node_up
        query: up{job="node", node="{{ inventory_hostname }}"}
        op: "=="
        value: 1

- name: Gate a vLLM node on the model path it loaded
  namtech.internal_ai.llm_health:
    url: "http://{{ ansible_host }}:8000"
    engine: openai
    api_key: "{{ vault_vllm_api_key }}"
    model: assistant
    expected_root: /srv/models/chat-v2
    warmup: true
    max_ttft_seconds: 5

- name: Wait until the node passes, up to a minute
  namtech.internal_ai.llm_health:
    url: "http://{{ ansible_host }}:11434"
    model: assistant
  register: gate
  until: gate is succeeded
  retries: 6
  delay: 10
"""

RETURN = r"""
passed:
  description: Whether every check passed. The module fails when it is false.
  returned: always
  type: bool
  sample: true
checks:
  description:
    - Every check, in the order it ran, also when the module fails.
    - C(value) of a probe holds C(ttft_seconds) (time to the first token), C(seconds) (the whole answer),
      C(tokens) (as the server counts them) and C(tokens_per_second) (after the first token); its C(expected)
      holds O(max_ttft_seconds) and O(max_seconds).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(engine), C(digest), C(root), C(loaded), C(warmup), C(probe N) or C(prometheus NAME).
      type: str
    passed:
      description: Whether the check passed. A check that could not run did not pass.
      type: bool
    value:
      description: What was measured (the engine version, the digest, the root, whether loaded, a probe's figures,
        the Prometheus value); null when nothing could be measured.
      type: raw
    expected:
      description: What the value had to be (the expected digest or root, the probe limits, C(OP VALUE) for
        Prometheus); null when anything goes.
      type: raw
    detail:
      description: A sentence on the outcome; for a failure, what went wrong. Starts with C(not run:) for a check
        that could not run.
      type: str
  sample:
    - name: engine
      passed: true
      value: 0.12.6
      expected: null
      detail: Ollama 0.12.6 answers at http://10.0.0.5:11434
    - name: digest
      passed: false
      value: 9a1c0e5d2b7f4a8c6e3d1b0f9a8c7e6d5b4a3c2d1e0f9a8b7c6d5e4f3a2b1c0d
      expected: 4f8d2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c
      detail: >-
        assistant:latest has digest 9a1c0e5d2b7f4a8c6e3d1b0f9a8c7e6d5b4a3c2d1e0f9a8b7c6d5e4f3a2b1c0d, expected
        4f8d2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c: the name points at another version
        than the one deployed
    - name: probe 1
      passed: true
      value: {ttft_seconds: 0.031, seconds: 0.142, tokens: 16, tokens_per_second: 148.6}
      expected: {max_ttft_seconds: 2.0, max_seconds: 20.0}
      detail: first token after 0.031 s, 16 tokens in 0.142 s (148.6 tokens/s)
    - name: prometheus error_ratio
      passed: true
      value: 0.0
      expected: "< 0.05"
      detail: 0 < 0.05
failed_checks:
  description: The names of the checks that did not pass.
  returned: always
  type: list
  elements: str
  sample: [digest, probe 2]
url:
  description: The engine URL that was checked.
  returned: always
  type: str
engine:
  description: The engine type that was checked.
  returned: always
  type: str
model:
  description: The served name that was checked.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.namtech.internal_ai.plugins.module_utils import health
from ansible_collections.namtech.internal_ai.plugins.module_utils.api_module import (
    API_MUTUALLY_EXCLUSIVE,
    API_REQUIRED_BY,
    api_argument_spec,
    fail_with_api_error,
    http_client_from_module,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import (
    DEFAULT_URL as OLLAMA_URL,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import (
    OllamaClient,
    is_sha256_hex,
    normalize_digest,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.openai import (
    DEFAULT_URL as OPENAI_URL,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.openai import OpenAIClient

DEFAULT_URLS = {"ollama": OLLAMA_URL, "openai": OPENAI_URL}


def check_engine_options(module):
    params = module.params
    engine = params["engine"]
    if engine == "openai":
        if params["expected_digest"] is not None:
            module.fail_json(msg="expected_digest only applies to engine=ollama; for an OpenAI-compatible server such "
                                 "as vLLM check expected_root")
        if params["require_loaded"]:
            module.fail_json(msg="require_loaded only applies to engine=ollama; vLLM loads its model when it starts")
    elif params["expected_root"] is not None:
        module.fail_json(msg="expected_root only applies to engine=openai; for Ollama check expected_digest")
    if params["expected_digest"] is not None and not is_sha256_hex(normalize_digest(params["expected_digest"])):
        module.fail_json(msg="expected_digest must be 64 hex digits, optionally prefixed with sha256: (got %r); copy "
                             "it from ollama list, ollama_info or ollama_model's result" % params["expected_digest"])


def check_probe_options(module):
    params = module.params
    if not params["model"].strip():
        module.fail_json(msg="model must not be empty")
    if not 0 <= params["probes"] <= health.MAX_PROBES:
        module.fail_json(msg="probes must be between 0 and %d (got %d)" % (health.MAX_PROBES, params["probes"]))
    if params["max_tokens"] < 1:
        module.fail_json(msg="max_tokens must be 1 or more (got %d)" % params["max_tokens"])
    for name in ("max_seconds", "max_ttft_seconds"):
        if params[name] is not None and params[name] <= 0:
            module.fail_json(msg="%s must be a positive number of seconds (got %s)" % (name, params[name]))
    if not params["prompt"].strip():
        module.fail_json(msg="prompt must not be empty")


def check_prometheus_options(module):
    specs = module.params["prometheus_checks"] or []
    if not specs:
        return
    url = module.params["prometheus_url"]
    if not url.startswith(("http://", "https://")):
        module.fail_json(msg="prometheus_url must start with http:// or https:// (got %r), for example "
                             "http://10.0.0.9:9090" % url)
    if not health.HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=health.JMESPATH_IMPORT_ERROR)
    seen = set()
    for index, spec in enumerate(specs):
        where = "prometheus_checks[%d]" % index
        for field in ("name", "query"):
            if not spec[field].strip():
                module.fail_json(msg="%s: %s must not be empty" % (where, field))
        if spec["name"] in seen:
            module.fail_json(msg="%s: the name %s is used twice; give each check its own name" % (where, spec["name"]))
        seen.add(spec["name"])
        try:
            health.compile_path(spec["path"])
        except ValueError as exc:
            module.fail_json(msg="%s (%s): path %r is not a JMESPath expression: %s"
                                 % (where, spec["name"], spec["path"], exc))


def gate_options(params):
    expected = params["expected_digest"] or params["expected_root"]
    require_loaded = params["require_loaded"]
    return {
        "expected": normalize_digest(expected) if params["expected_digest"] else expected,
        "require_loaded": params["engine"] == "ollama" if require_loaded is None else require_loaded,
        "probes": params["probes"],
        "prompt": params["prompt"],
        "max_tokens": params["max_tokens"],
        "max_seconds": params["max_seconds"],
        "max_ttft_seconds": params["max_ttft_seconds"],
        "warmup": params["warmup"],
        "prometheus_checks": params["prometheus_checks"],
    }


def prometheus_client(module):
    """A client for Prometheus: its own login and CA, never the engine's API key or client certificate."""
    params = module.params
    if not params["prometheus_checks"]:
        return None
    return http_client_from_module(
        module, url=params["prometheus_url"], api_token=None, client_cert=None, client_key=None,
        url_username=params["prometheus_username"], url_password=params["prometheus_password"],
        ca_path=params["prometheus_ca_path"] or params["ca_path"])


def target_for(engine, http, model):
    if engine == "ollama":
        return health.OllamaTarget(OllamaClient(http), model)
    return health.OpenAITarget(OpenAIClient(http), model)


def main():
    argument_spec = api_argument_spec(None)
    argument_spec.update(
        engine=dict(type="str", choices=["ollama", "openai"], default="ollama"),
        model=dict(type="str", required=True),
        expected_digest=dict(type="str"),
        expected_root=dict(type="str"),
        require_loaded=dict(type="bool"),
        probes=dict(type="int", default=3),
        prompt=dict(type="str", default=health.DEFAULT_PROMPT),
        max_tokens=dict(type="int", default=16, no_log=False),
        max_seconds=dict(type="float"),
        max_ttft_seconds=dict(type="float"),
        warmup=dict(type="bool", default=False),
        prometheus_url=dict(type="str"),
        prometheus_username=dict(type="str"),
        prometheus_password=dict(type="str", no_log=True),
        prometheus_ca_path=dict(type="path"),
        prometheus_checks=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            query=dict(type="str", required=True),
            path=dict(type="str", default=health.DEFAULT_PROMETHEUS_PATH),
            op=dict(type="str", choices=list(health.OPERATORS), required=True),
            value=dict(type="float", required=True),
        )),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=API_MUTUALLY_EXCLUSIVE,
        required_by=dict(API_REQUIRED_BY, prometheus_checks="prometheus_url"),
        required_together=[("prometheus_username", "prometheus_password")],
        supports_check_mode=True,
    )
    params = module.params
    params["url"] = params["url"] or DEFAULT_URLS[params["engine"]]
    check_engine_options(module)
    check_probe_options(module)
    check_prometheus_options(module)
    result = dict(changed=False, url=params["url"], engine=params["engine"], model=params["model"])
    prometheus = prometheus_client(module)
    try:
        with http_client_from_module(module) as http:
            target = target_for(params["engine"], http, params["model"])
            checks = health.HealthGate(target, gate_options(params),
                                       health.PrometheusClient(prometheus) if prometheus else None).run()
    except ApiError as exc:
        fail_with_api_error(module, exc, **result)
    finally:
        if prometheus is not None:
            prometheus.close()
    failed = [item["name"] for item in checks if not item["passed"]]
    result.update(passed=not failed, checks=checks, failed_checks=failed)
    if failed:
        module.fail_json(msg=health.failure_message(params["model"], params["url"], checks), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
