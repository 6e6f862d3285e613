# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ollama_info
short_description: Read what an Ollama server runs, has on disk and holds in memory
version_added: 0.1.0
description:
  - Asks an Ollama server for its version (C(/api/version)), the models it has on disk with their
    digests and sizes (C(/api/tags)), and the models loaded in memory with their VRAM use and
    expiry (C(/api/ps)).
  - Never changes anything on the server.
author:
  - Namtech platform engineering (@namtech)
options:
  url:
    description:
      - Base URL of the Ollama API, the address in C(OLLAMA_HOST).
    type: str
    default: http://127.0.0.1:11434
  gather:
    description:
      - Which parts to read. Leave out what you do not need to save requests.
    type: list
    elements: str
    choices: [version, models, loaded]
    default: [version, models, loaded]
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
  - module: namtech.internal_ai.openai_info
"""

EXAMPLES = r"""
- name: Read the node's engine state
  namtech.internal_ai.ollama_info:
    url: "http://{{ ansible_host }}:11434"
  register: engine

- name: Fail when the node lacks the pinned version of the model
  ansible.builtin.assert:
    that: pinned_digest in (engine.models | selectattr('name', 'equalto', 'llama3.2:3b') | map(attribute='digest'))
    fail_msg: "{{ inventory_hostname }} does not have llama3.2:3b at digest {{ pinned_digest }}"

- name: Only what is loaded in memory, from the controller
  namtech.internal_ai.ollama_info:
    url: "http://{{ ansible_host }}:11434"
    gather: [loaded]
  delegate_to: localhost
  register: loaded
"""

RETURN = r"""
url:
  description: The base URL that was asked.
  returned: always
  type: str
  sample: http://10.0.0.5:11434
version:
  description: The server's version.
  returned: when O(gather) contains V(version)
  type: str
  sample: 0.12.6
models:
  description: The models on disk, as C(/api/tags) lists them.
  returned: when O(gather) contains V(models)
  type: list
  elements: dict
  contains:
    name:
      description: The model's name with its tag.
      type: str
      sample: llama3.2:3b
    model:
      description: The model's name as the server reports it in the C(model) field.
      type: str
    digest:
      description: The manifest digest (hex, without the C(sha256:) prefix), which tells versions apart.
      type: str
      sample: a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72
    size:
      description: Bytes on disk.
      type: int
    modified_at:
      description: When the model was pulled or created.
      type: str
    details:
      description: Format, family, parameter size and quantisation level where the server gives them.
      type: dict
loaded:
  description: The models in memory, as C(/api/ps) lists them.
  returned: when O(gather) contains V(loaded)
  type: list
  elements: dict
  contains:
    name:
      description: The model's name with its tag.
      type: str
    digest:
      description: The manifest digest.
      type: str
    size:
      description: Bytes of memory the loaded model takes.
      type: int
    size_vram:
      description: Of RV(loaded[].size), the bytes held in GPU memory.
      type: int
    processor:
      description: The CPU/GPU split as C(ollama ps) shows it.
      type: str
      sample: 100% GPU
    expires_at:
      description: When the server will unload the model if it is not used (its keep-alive).
      type: str
    context_length:
      description: The context length it was loaded with, where the server says.
      type: int
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
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import DEFAULT_URL, OllamaClient

GATHER_CHOICES = ["version", "models", "loaded"]


def read_engine_state(client, gather):
    readers = {"version": client.version, "models": client.tags, "loaded": client.ps}
    return dict((part, readers[part]()) for part in GATHER_CHOICES if part in gather)


def main():
    argument_spec = api_argument_spec(DEFAULT_URL)
    argument_spec.update(gather=dict(type="list", elements="str", choices=GATHER_CHOICES, default=GATHER_CHOICES))
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=API_MUTUALLY_EXCLUSIVE,
        required_by=API_REQUIRED_BY,
        supports_check_mode=True,
    )
    result = dict(changed=False, url=module.params["url"])
    with http_client_from_module(module) as http:
        try:
            result.update(read_engine_state(OllamaClient(http), module.params["gather"]))
        except ApiError as exc:
            fail_with_api_error(module, exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
