# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: model_release
short_description: Record which model version a served alias points at, with history for rollback
version_added: 0.1.0
description:
  - Keeps the release record of a node, a JSON file that says, for each served alias (an Ollama alias tag or a
    vLLM C(--served-model-name)), which model and digest it serves, since when and deployed by which run; the
    versions it served before, newest first, for rollback; and a candidate being evaluated.
  - Only the record changes. Repointing the engine is done by other modules (M(namtech.internal_ai.ollama_model)
    with O(namtech.internal_ai.ollama_model#module:copy_from), or a vLLM restart); run this module right after the
    engine serves the new version.
  - >-
    The file (format 1) is read by the C(llm_exporter) role and by people. Its top level is an object with
    C(format) (1) and C(aliases), which maps each alias to an object with C(current), C(previous) and C(candidate).
    C(current) is the version served now, an object with C(model), C(digest), C(engine), C(since) and
    C(deployed_by), or null. C(previous) lists the versions served before, newest first, each with C(until) added;
    it never holds the current version nor the same version twice. C(candidate) is the staged version, an object
    with C(model), C(digest), C(engine), C(staged_at) and C(staged_by), or null.
    Digests are 64 lower-case hex digits without C(sha256:) (null when none was given), timestamps are UTC,
    ISO 8601 to the second with a C(Z), for example C(2026-03-01T10:00:00Z).
  - A file the module cannot parse, or of another format, is never overwritten; the module fails and says so.
author:
  - Namtech platform engineering (@namtech)
options:
  path:
    description:
      - The release record on the node. Its directory is created (mode 0755) when missing; a new file gets mode
        0644 so an exporter can read it, an existing file keeps its owner and mode.
    type: path
    default: /var/lib/namtech_ai/releases.json
  alias:
    description:
      - The served name the entry is about, as clients call it, for example V(assistant).
      - Required for every O(action) but V(info); V(info) without it returns the whole record.
    type: str
  action:
    description:
      - V(info) reads the record and changes nothing.
      - V(stage) records O(model) at O(digest) as the alias's candidate (the version being evaluated). Staging the
        candidate already staged changes nothing.
      - V(promote) makes O(model) at O(digest) the alias's current version, or the staged candidate when O(model)
        is not given. The old current version goes to the head of the previous versions, with its C(until) time.
        Promoting the current version changes nothing; promoting the staged candidate clears it.
      - V(rollback) makes a previous version current again, the newest one or the one O(to) names; the version it
        replaces goes to the head of the previous versions. Fails when there is no previous version or none
        matches O(to).
      - V(clear_candidate) forgets the staged candidate (for example after it failed its evaluation).
    type: str
    choices: [info, stage, promote, rollback, clear_candidate]
    default: info
  model:
    description:
      - The model the alias serves, for example V(llama3.2:3b) (Ollama) or the model path or repository vLLM
        serves (C(root) in C(/v1/models)).
      - Required by O(action=stage); optional for O(action=promote) (default the staged candidate).
    type: str
  digest:
    description:
      - The model's digest, 64 hex digits, with or without C(sha256:), as C(/api/tags) and
        M(namtech.internal_ai.ollama_model) give it.
      - Required with O(model) when O(engine=ollama); optional for O(engine=openai), whose servers list no digest.
    type: str
  engine:
    description:
      - The engine that serves the alias. A promoted candidate keeps the engine it was staged with.
    type: str
    choices: [ollama, openai]
    default: ollama
  deployed_by:
    description:
      - Who or what made the change, stored as C(deployed_by) (or C(staged_by)) in the record, for example the
        id of the AWX job or the name of the operator.
    type: str
    default: ansible
  keep_previous:
    description:
      - How many previous versions to keep per alias. Applied when O(action=promote) or O(action=rollback) changes
        the current version; the oldest are dropped first. V(0) keeps no history, so no rollback.
    type: int
    default: 5
  to:
    description:
      - With O(action=rollback), the previous version to make current, named by its model or its digest (the first
        12 hex digits or more). Default the newest previous version.
      - When the current version already matches O(to), nothing changes. Without O(to) every run goes back one more
        version, so give O(to) (for example the digest registered before the swap) for a task that may run twice.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Computes and returns the entry as it would be, writes nothing.
  diff_mode:
    support: full
    details: The alias's entry before and after, as JSON text.
  platform:
    platforms: posix
notes:
  - Concurrent runs against the same file are not locked against each other; a rollout changes one node in one
    task at a time.
seealso:
  - module: namtech.internal_ai.ollama_model
  - module: namtech.internal_ai.llm_health
"""

EXAMPLES = r"""
- name: Record the candidate being evaluated on the canary
  namtech.internal_ai.model_release:
    alias: assistant
    action: stage
    model: lab-chat:v2
    digest: "{{ pulled.digest }}"
    deployed_by: "awx-job-{{ awx_job_id | default('manual') }}"

- name: Record the swap once the alias serves the new version
  namtech.internal_ai.model_release:
    alias: assistant
    action: promote
    model: lab-chat:v2
    digest: "{{ pulled.digest }}"
    deployed_by: "awx-job-{{ awx_job_id | default('manual') }}"
  register: release

- name: Roll the record back to the version served before the swap
  namtech.internal_ai.model_release:
    alias: assistant
    action: rollback
    to: "{{ release.before.current.digest }}"

- name: What does every alias on this node serve?
  namtech.internal_ai.model_release:
  register: releases

- name: The vLLM served name, recorded by model path
  namtech.internal_ai.model_release:
    alias: assistant
    action: promote
    engine: openai
    model: /srv/models/chat-v2
"""

RETURN = r"""
path:
  description: The release record file.
  returned: always
  type: str
  sample: /var/lib/namtech_ai/releases.json
release:
  description: The alias's entry after the task (in check mode, as it would be); null when the alias has none.
  returned: when O(alias) is given
  type: dict
  contains:
    current:
      description: The version served now, with C(model), C(digest), C(engine), C(since), C(deployed_by); null when
        none was recorded.
      type: dict
    previous:
      description: The versions served before, newest first, each also with C(until).
      type: list
      elements: dict
    candidate:
      description: The staged candidate with C(model), C(digest), C(engine), C(staged_at), C(staged_by); or null.
      type: dict
  sample:
    current: {model: "lab-chat:v2", digest: "4f8d...", engine: ollama, since: "2026-03-01T10:00:00Z",
              deployed_by: awx-job-1234}
    previous:
      - {model: "lab-chat:v1", digest: "9a1c...", engine: ollama, since: "2026-02-01T09:00:00Z",
         until: "2026-03-01T10:00:00Z", deployed_by: awx-job-1200}
    candidate: null
before:
  description: The alias's entry before the task, in the same shape as RV(release); null when the alias had none.
  returned: when O(alias) is given and O(action) is not V(info)
  type: dict
record:
  description: The whole record, C({format, aliases}).
  returned: when O(action=info)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.namtech.internal_ai.plugins.module_utils.files import fail_on_nul_bytes_in_paths
from ansible_collections.namtech.internal_ai.plugins.module_utils.release import (
    ACTIONS,
    DEFAULT_ENGINE,
    DEFAULT_PATH,
    ENGINES,
    ReleaseError,
    ReleaseRecord,
    render,
    valid_digest,
    version_of,
)

WRITING_ACTIONS = ("stage", "promote", "rollback", "clear_candidate")


def check_params(module):
    """Refuse combinations that would silently do something else than the task says."""
    params = module.params
    action = params["action"]
    for option in ("alias", "model", "deployed_by"):
        if params[option] is not None and not params[option].strip():
            module.fail_json(msg="%s must not be empty" % option)
    if action in WRITING_ACTIONS and not params["alias"]:
        module.fail_json(msg="alias is required for action=%s" % action)
    if params["digest"] is not None and not valid_digest(params["digest"]):
        module.fail_json(msg="digest must be 64 hex digits, optionally prefixed with sha256: (got %r); copy it from "
                             "ollama list, ollama_info or ollama_model's result" % params["digest"])
    if params["keep_previous"] < 0:
        module.fail_json(msg="keep_previous must be 0 or more (got %d)" % params["keep_previous"])
    if params["to"] is not None and action != "rollback":
        module.fail_json(msg="to only applies to action=rollback; remove it from this task")
    if action not in ("stage", "promote"):
        for option in ("model", "digest"):
            if params[option] is not None:
                module.fail_json(msg="%s only applies to action=stage or action=promote; remove it from this task%s"
                                     % (option, " (name the version with to)" if action == "rollback" else ""))
    if params["digest"] is not None and params["model"] is None:
        module.fail_json(msg="digest needs model: give the model name the digest belongs to")
    if action == "stage" and params["model"] is None:
        module.fail_json(msg="action=stage needs model (and digest for engine=ollama)")
    if params["model"] is not None and params["engine"] == "ollama" and params["digest"] is None:
        module.fail_json(msg="digest is required with model for engine=ollama, so the record pins the exact version; "
                             "take it from ollama_model's result or ollama list")


def requested_version(params):
    if params["model"] is None:
        return None
    return version_of(params["model"].strip(), params["digest"], params["engine"])


def diff_of(path, alias, before, after):
    header = "%s (alias %s)" % (path, alias)
    return {"before": "" if before is None else render(before), "after": "" if after is None else render(after),
            "before_header": header, "after_header": header}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default=DEFAULT_PATH),
            alias=dict(type="str"),
            action=dict(type="str", choices=list(ACTIONS), default="info"),
            model=dict(type="str"),
            digest=dict(type="str"),
            engine=dict(type="str", choices=list(ENGINES), default=DEFAULT_ENGINE),
            deployed_by=dict(type="str", default="ansible"),
            keep_previous=dict(type="int", default=5),
            to=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    fail_on_nul_bytes_in_paths(module)
    check_params(module)
    params = module.params
    path, action = params["path"], params["action"]
    alias = params["alias"].strip() if params["alias"] else None
    result = dict(changed=False, path=path)
    try:
        record = ReleaseRecord(path)
        if action == "info":
            if alias is not None:
                result["release"] = record.entry(alias)
            result["record"] = record.data
            module.exit_json(**result)
        before, after = record.apply(alias, action, version=requested_version(params), target=params["to"],
                                     by=params["deployed_by"].strip(), keep_previous=params["keep_previous"])
        result.update(before=before, release=after, changed=before != after)
        if result["changed"] and not module.check_mode:
            record.save(module.atomic_move)
    except ReleaseError as exc:
        module.fail_json(msg=str(exc), **result)
    if module._diff:
        result["diff"] = diff_of(path, alias, before, after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
