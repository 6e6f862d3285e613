# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ollama_model
short_description: Pull, pin, alias, warm up and remove models on an Ollama server
version_added: 0.1.0
description:
  - Makes a model present on an Ollama server (C(/api/pull)), optionally pinned to a manifest digest,
    or absent (C(/api/delete)).
  - Ollama cannot pull by digest. With O(digest) the module pulls the tag and then compares the digest
    the server lists; on a mismatch it removes what it pulled, puts back the version that was there
    before (if any) and fails.
  - A stable served name (an alias) is a model name created with C(/api/copy) from a concrete model.
    Copies share their blobs, so an alias costs no disk and repointing it is another copy.
    O(copy_from) makes O(name) such a copy; O(alias) points a second name at O(name) after it is present.
  - Idempotent. Nothing is pulled when O(name) is already there (at O(digest) when given).
author:
  - Namtech platform engineering (@namtech)
options:
  url:
    description:
      - Base URL of the Ollama API, the address in C(OLLAMA_HOST).
    type: str
    default: http://127.0.0.1:11434
  name:
    description:
      - The model, as C(ollama pull) takes it, for example C(llama3.2:3b) or C(registry.example.com/team/model:v2).
        Without a tag it means C(:latest).
      - With O(copy_from), the name of the copy (the stable served name).
    type: str
    required: true
  state:
    description:
      - V(present) pulls (or copies) the model when it is missing or at another digest than O(digest).
      - V(absent) deletes it. A model that shares its digest with another name (an alias made by copy, or the
        model an alias copies) is only deleted with O(force=true).
    type: str
    choices: [present, absent]
    default: present
  digest:
    description:
      - The manifest digest the model must have (64 hex digits, with or without C(sha256:)), as C(/api/tags)
        and C(ollama list) show it.
      - When the pulled (or copied) model has another digest the module fails, and a pulled model is removed.
    type: str
  copy_from:
    description:
      - Make O(name) a copy of this model, which must already be on the server. Repoints O(name) when it
        exists at another digest. Nothing is pulled.
    type: str
  alias:
    description:
      - After O(name) is present, make this name a copy of it (create or repoint the alias).
    type: str
  insecure:
    description:
      - Allow a registry over plain http or with a certificate the server does not trust (C(ollama pull --insecure)).
    type: bool
    default: false
  warm:
    description:
      - Load the model (O(alias) when given, else O(name)) into memory, so the first request does not wait for it.
        Counts as a change only when the model was not loaded yet.
    type: bool
    default: false
  keep_alive:
    description:
      - With O(warm), how long the server keeps the model loaded after the warm-up, as Ollama's C(keep_alive)
        (V(5m), V(1h), V(-1) for ever, a number of seconds). The server's C(OLLAMA_KEEP_ALIVE) when not given.
    type: str
  force:
    description:
      - With O(state=absent), delete the model even when another name shares its digest.
    type: bool
    default: false
extends_documentation_fragment:
  - namtech.internal_ai.api
attributes:
  check_mode:
    support: full
    description: Reads the server and reports what would change; pulls, copies, deletes and loads nothing.
  diff_mode:
    support: full
    description: The digests of O(name) (and O(alias)) before and after.
notes:
  - O(timeout) is the longest wait for the next progress line of a pull, not for the whole pull.
  - Ollama keeps a partly downloaded blob to resume a later pull; the module removes the model's name after a
    failed pull but cannot remove such a file through the API.
seealso:
  - module: namtech.internal_ai.ollama_info
"""

EXAMPLES = r"""
- name: Pull a model pinned to a digest
  namtech.internal_ai.ollama_model:
    url: "http://{{ ansible_host }}:11434"
    name: llama3.2:3b
    digest: a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72
    alias: assistant
  register: pulled

- name: Show how long it took
  ansible.builtin.debug:
    msg: "{{ pulled.progress.bytes }} bytes in {{ pulled.progress.seconds }} s"
  when: pulled.progress is defined

- name: Repoint the served name to another version and load it into memory
  namtech.internal_ai.ollama_model:
    url: "http://{{ ansible_host }}:11434"
    name: assistant
    copy_from: llama3.2:3b-v2
    warm: true
    keep_alive: 1h

- name: Remove an old version (fails while an alias still points at it)
  namtech.internal_ai.ollama_model:
    url: "http://{{ ansible_host }}:11434"
    name: llama3.2:3b-v1
    state: absent
"""

RETURN = r"""
name:
  description: The model's name with its tag.
  returned: always
  type: str
  sample: lab-chat:v1
digest:
  description: The model's digest after the task (hex); null when absent. In check mode, what it would be when known.
  returned: always
  type: str
  sample: 2c4bd0c0a8f3e6b5d2f3a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0
previous_digest:
  description: The model's digest before the task; null when it was not there.
  returned: always
  type: str
actions:
  description: What the module did (or would do in check mode), in order, for example C(pull lab-chat:v1).
  returned: always
  type: list
  elements: str
alias:
  description: The alias and the digest it points at after the task.
  returned: when O(alias) is given
  type: dict
  contains:
    name:
      description: The alias with its tag.
      type: str
    digest:
      description: The digest it points at.
      type: str
    previous_digest:
      description: The digest it pointed at before; null when it did not exist.
      type: str
progress:
  description: The pull's transfer figures.
  returned: when a pull ran
  type: dict
  contains:
    bytes:
      description: Bytes of the model's layers the pull transferred or found in place.
      type: int
    layers:
      description: Layers the pull reported.
      type: int
    seconds:
      description: Duration of the pull.
      type: float
    bytes_per_second:
      description: Throughput of the pull.
      type: int
loaded:
  description: Whether the model was loaded into memory by this task (false when it already was).
  returned: when O(warm=true)
  type: bool
shared_with:
  description: With O(state=absent), the other names that share the model's digest.
  returned: when O(state=absent) and the model was there
  type: list
  elements: str
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
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import (
    DEFAULT_URL,
    OllamaClient,
    PullProgress,
    canonical_model_name,
    is_sha256_hex,
    keep_alive_value,
    normalize_digest,
)

BACKUP_SUFFIX = "-ansible-previous"


class ModelTaskFailed(Exception):
    """A failure after which the module has already put the server back as it was; the text says what to do."""


def pull_hint(message):
    lowered = message.lower()
    if "no space left" in lowered or "enospc" in lowered:
        return " Free space on the disk that holds the server's models (OLLAMA_MODELS) and run the task again"
    if "file does not exist" in lowered or "not found" in lowered:
        return " Check the model's name and tag on its registry"
    if "insecure" in lowered:
        return " Set insecure=true for a registry reached over http"
    return (" Check that the Ollama server reaches its registry (DNS, proxy, firewall); for a registry over "
            "http set insecure=true")


class ModelTask:
    """One run of the module: reads the server once, then makes each change in turn."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.check_mode = module.check_mode
        self.name = canonical_model_name(self.params["name"])
        self.digests = client.digests()
        self.before = dict(self.digests)
        self.actions = []
        self.result = {"changed": False, "name": self.name, "actions": self.actions,
                       "previous_digest": self.digests.get(self.name)}

    def changed(self, action):
        self.actions.append(action)
        self.result["changed"] = True

    # -- present ---------------------------------------------------------------------------------

    def present(self, wanted):
        if self.params["copy_from"]:
            digest = self.ensure_copy(canonical_model_name(self.params["copy_from"]), self.name, wanted)
        else:
            digest = self.ensure_pulled(wanted)
        self.result["digest"] = digest
        served = self.name
        if self.params["alias"]:
            served = canonical_model_name(self.params["alias"])
            before = self.digests.get(served)
            after = self.ensure_copy(self.name, served, None, source_digest=digest)
            self.result["alias"] = {"name": served, "digest": after, "previous_digest": before}
        if self.params["warm"]:
            self.result["loaded"] = self.warm(served, digest)

    def ensure_pulled(self, wanted):
        current = self.digests.get(self.name)
        if current is not None and (wanted is None or current == wanted):
            return current
        self.changed("pull %s" % self.name)
        if self.check_mode:
            return wanted
        backup = self.keep_previous(current)
        try:
            digest = self.pull_checked(wanted)
        except (ApiError, ModelTaskFailed) as exc:
            self.undo_pull(current, backup)
            raise ModelTaskFailed(self.explain_failed_pull(exc, current)) from None
        self.drop(backup)
        self.digests[self.name] = digest
        return digest

    def keep_previous(self, current):
        """Before a pull replaces a version, copy it to a temporary name so a failed pull can put it back."""
        if current is None:
            return None
        backup = self.name + BACKUP_SUFFIX
        self.client.copy(self.name, backup)
        return backup

    def pull_checked(self, wanted):
        progress = PullProgress()
        for event in self.client.pull(self.name, insecure=self.params["insecure"]):
            progress.record(event)
        progress.finish()
        self.result["progress"] = progress.summary()
        digest = self.client.digests().get(self.name)
        if digest is None:
            raise ModelTaskFailed("the pull of %s reported success but /api/tags does not list it" % self.name)
        if wanted is not None and digest != wanted:
            raise ModelTaskFailed(
                "digest mismatch: the registry serves %s at digest %s, the task wants %s. The pulled model was "
                "removed. The tag now points at another version: pin the digest the registry serves, or pull a tag "
                "that still has the wanted version" % (self.name, digest, wanted))
        return digest

    def undo_pull(self, current, backup):
        try:
            if backup is not None:
                self.client.copy(backup, self.name)
                self.client.delete(backup)
            else:
                self.client.delete(self.name)
        except ApiError as exc:
            self.module.warn("could not undo the failed pull of %s: %s" % (self.name, exc))

    def explain_failed_pull(self, exc, current):
        restored = ("the previous version (%s) was put back" % current) if current else "nothing of it was kept"
        if isinstance(exc, ModelTaskFailed):
            return str(exc)
        return "cannot pull %s (%s): %s.%s" % (self.name, restored, exc, pull_hint(str(exc)))

    def drop(self, backup):
        if backup is not None:
            self.client.delete(backup)

    def ensure_copy(self, source, destination, wanted, source_digest=None):
        """Make ``destination`` a copy of ``source``; return the digest it ends with."""
        if source_digest is None:
            source_digest = self.digests.get(source)
        if source_digest is None and not (self.check_mode and source == self.name):
            raise ModelTaskFailed("cannot copy %s to %s: %s is not on the server. Pull it first (state=present, "
                                  "name=%s)" % (source, destination, source, source))
        if wanted is not None and source_digest != wanted:
            raise ModelTaskFailed("%s has digest %s, the task wants %s for %s; nothing was copied"
                                  % (source, source_digest, wanted, destination))
        if self.digests.get(destination) == source_digest and source_digest is not None:
            return source_digest
        self.changed("copy %s to %s" % (source, destination))
        if not self.check_mode:
            self.client.copy(source, destination)
            self.digests[destination] = source_digest
        return source_digest

    def warm(self, served, digest):
        if digest is not None and digest in self.client.loaded_digests():
            return False
        self.changed("load %s" % served)
        if not self.check_mode:
            self.client.load(served, keep_alive=keep_alive_value(self.params["keep_alive"]))
        return True

    # -- absent ----------------------------------------------------------------------------------

    def absent(self):
        current = self.digests.get(self.name)
        self.result["digest"] = None
        if current is None:
            return
        shared = sorted(other for other, digest in self.digests.items() if digest == current and other != self.name)
        self.result["shared_with"] = shared
        if shared and not self.params["force"]:
            raise ModelTaskFailed(
                "refusing to delete %s: %s share%s its digest %s (an alias made by copy, or the model an alias "
                "copies). Repoint or remove %s first, or set force=true"
                % (self.name, ", ".join(shared), "s" if len(shared) == 1 else "", current,
                   "it" if len(shared) == 1 else "them"))
        self.changed("delete %s" % self.name)
        if not self.check_mode:
            self.client.delete(self.name)

    def diff(self):
        def state(digests):
            lines = ["%s: %s" % (self.name, digests.get(self.name) or "absent")]
            if self.params["alias"]:
                alias = canonical_model_name(self.params["alias"])
                lines.append("%s: %s" % (alias, digests.get(alias) or "absent"))
            return "\n".join(lines) + "\n"

        after = dict(self.digests)
        after[self.name] = self.result.get("digest")
        if "alias" in self.result:
            after[self.result["alias"]["name"]] = self.result["alias"]["digest"]
        return {"before": state(self.before), "after": state(after)}


def check_params(module):
    params = module.params
    if params["state"] == "absent":
        for option in ("copy_from", "alias", "digest"):
            if params[option]:
                module.fail_json(msg="%s only applies to state=present; remove it from this task" % option)
        if params["warm"]:
            module.fail_json(msg="warm only applies to state=present; remove it from this task")
    wanted = None
    if params["digest"]:
        wanted = normalize_digest(params["digest"])
        if not is_sha256_hex(wanted):
            module.fail_json(msg="digest must be 64 hex digits, optionally prefixed with sha256: (got %r); copy it "
                                 "from ollama list or ollama_info" % params["digest"])
    for option in ("name", "copy_from", "alias"):
        if params[option] is not None and not params[option].strip():
            module.fail_json(msg="%s must not be empty" % option)
    if params["alias"] and canonical_model_name(params["alias"]) == canonical_model_name(params["name"]):
        module.fail_json(msg="alias must differ from name (both are %s)" % canonical_model_name(params["name"]))
    return wanted


def main():
    argument_spec = api_argument_spec(DEFAULT_URL)
    argument_spec.update(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        digest=dict(type="str"),
        copy_from=dict(type="str"),
        alias=dict(type="str"),
        insecure=dict(type="bool", default=False),
        warm=dict(type="bool", default=False),
        keep_alive=dict(type="str", no_log=False),
        force=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=API_MUTUALLY_EXCLUSIVE,
        required_by=API_REQUIRED_BY,
        supports_check_mode=True,
    )
    wanted = check_params(module)
    name = canonical_model_name(module.params["name"])
    with http_client_from_module(module) as http:
        task = None
        try:
            task = ModelTask(module, OllamaClient(http))
            if module.params["state"] == "present":
                task.present(wanted)
            else:
                task.absent()
        except ModelTaskFailed as exc:
            module.fail_json(msg=str(exc), **task.result)
        except ApiError as exc:
            fail_with_api_error(module, exc, **(task.result if task else {"name": name}))
    if module._diff:
        task.result["diff"] = task.diff()
    module.exit_json(**task.result)


if __name__ == "__main__":
    main()
