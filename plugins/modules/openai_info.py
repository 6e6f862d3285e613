# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: openai_info
short_description: Read the health, version, served models and metrics of an OpenAI-compatible server
version_added: 0.1.0
description:
  - Asks an OpenAI-compatible server (vLLM, or Ollama's C(/v1) routes) whether it is healthy (C(/health)),
    its version (C(/version)), the models it serves (C(/v1/models)) and selected Prometheus metrics
    (C(/metrics)).
  - vLLM reports the path it loaded a model from in C(root), which tells the served versions apart behind
    a stable served name.
  - An endpoint the server does not have (HTTP 404) is listed in RV(missing_endpoints) instead of failing,
    so the module works against any OpenAI-compatible server.
  - Never changes anything on the server.
author:
  - Namtech platform engineering (@namtech)
options:
  url:
    description:
      - Root URL of the server, without the C(/v1) suffix OpenAI clients use.
    type: str
    default: http://127.0.0.1:8000
  gather:
    description:
      - Which parts to read.
    type: list
    elements: str
    choices: [health, version, models, metrics]
    default: [health, version, models, metrics]
  metrics:
    description:
      - Metric families to return from C(/metrics). A family matches its samples and their C(_total),
        C(_sum) and C(_count) series; ask for C(_bucket) series by their full name.
      - A family the server does not expose comes back as an empty list.
    type: list
    elements: str
    default:
      - "vllm:num_requests_running"
      - "vllm:num_requests_waiting"
      - "vllm:kv_cache_usage_perc"
      - "vllm:prompt_tokens"
      - "vllm:generation_tokens"
      - "vllm:request_success"
      - "vllm:time_to_first_token_seconds"
      - "vllm:e2e_request_latency_seconds"
extends_documentation_fragment:
  - namtech.internal_ai.api
attributes:
  check_mode:
    support: full
    description: The module only reads, so check mode runs it as usual.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
seealso:
  - module: namtech.internal_ai.ollama_info
"""

EXAMPLES = r"""
- name: Read a vLLM node
  namtech.internal_ai.openai_info:
    url: "http://{{ ansible_host }}:8000"
    api_key: "{{ vault_vllm_api_key }}"
  register: engine

- name: Fail unless the node serves the expected model version
  ansible.builtin.assert:
    that:
      - engine.healthy
      - (engine.models | selectattr('id', 'equalto', 'assistant') | first).root == '/srv/models/chat-v2'

- name: Only the queue length
  namtech.internal_ai.openai_info:
    url: "http://{{ ansible_host }}:8000"
    gather: [metrics]
    metrics: ["vllm:num_requests_waiting"]
  register: queue
"""

RETURN = r"""
url:
  description: The root URL that was asked.
  returned: always
  type: str
health_status:
  description: The HTTP status of C(/health); null when the server has no such endpoint.
  returned: when O(gather) contains V(health)
  type: int
  sample: 200
healthy:
  description: Whether C(/health) answered 200.
  returned: when O(gather) contains V(health)
  type: bool
version:
  description: The server's version from C(/version); null when the server has no such endpoint.
  returned: when O(gather) contains V(version)
  type: str
  sample: 0.32.0
models:
  description: The served models as C(/v1/models) lists them.
  returned: when O(gather) contains V(models)
  type: list
  elements: dict
  contains:
    id:
      description: The served model name clients ask for.
      type: str
    root:
      description: Where the server loaded the model from (vLLM); tells versions apart.
      type: str
    owned_by:
      description: The owner the server reports.
      type: str
    max_model_len:
      description: The context length the model is served with (vLLM).
      type: int
metrics:
  description: The selected metric families, each a list of samples with C(name), C(labels) and C(value).
  returned: when O(gather) contains V(metrics) and the server has C(/metrics)
  type: dict
  sample:
    "vllm:num_requests_waiting":
      - name: "vllm:num_requests_waiting"
        labels: {engine: "0", model_name: assistant}
        value: 0.0
missing_endpoints:
  description: Endpoints that answered 404, so their parts are null.
  returned: always
  type: list
  elements: str
  sample: [/version, /metrics]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.namtech.internal_ai.plugins.module_utils.api_module import (
    API_MUTUALLY_EXCLUSIVE,
    API_REQUIRED_BY,
    api_argument_spec,
    fail_with_api_error,
    http_client_from_module,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError
from ansible_collections.namtech.internal_ai.plugins.module_utils.openai import (
    DEFAULT_URL,
    OpenAIClient,
    v1_suffix_error,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.prometheus_text import select_families

GATHER_CHOICES = ["health", "version", "models", "metrics"]
DEFAULT_METRICS = [
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds",
]


def read_server_state(client, gather, families):
    """The gathered parts; an endpoint that answers 404 gives null and is named in missing_endpoints."""
    result = dict(missing_endpoints=[])
    if "health" in gather:
        status = client.health()
        result.update(health_status=status, healthy=status == 200)
    if "version" in gather:
        result["version"] = client.version()
    if "models" in gather:
        result["models"] = client.models()
    if "metrics" in gather:
        samples = client.metrics()
        result["metrics"] = None if samples is None else select_families(samples, families)
    for part, endpoint in (("health_status", "/health"), ("version", "/version"), ("metrics", "/metrics")):
        if part in result and result[part] is None:
            result["missing_endpoints"].append(endpoint)
    return result


def main():
    argument_spec = api_argument_spec(DEFAULT_URL)
    argument_spec.update(
        gather=dict(type="list", elements="str", choices=GATHER_CHOICES, default=GATHER_CHOICES),
        metrics=dict(type="list", elements="str", default=DEFAULT_METRICS),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=API_MUTUALLY_EXCLUSIVE,
        required_by=API_REQUIRED_BY,
        supports_check_mode=True,
    )
    url = module.params["url"]
    message = v1_suffix_error("url", url)
    if message:
        module.fail_json(msg=message)
    result = dict(changed=False, url=url)
    with http_client_from_module(module) as http:
        try:
            result.update(read_server_state(OpenAIClient(http), module.params["gather"], module.params["metrics"]))
        except ApiError as exc:
            fail_with_api_error(module, exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
