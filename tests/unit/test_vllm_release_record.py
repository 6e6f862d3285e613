"""The vllm role and the release record that upgrade_model.yml and rollback_model.yml keep: the role records what each
served name serves (model directory, archive sha256), follows the record over vllm_models once a rollout changed it
(so a second ai_nodes.yml never undoes a rollout), and the rollout role finds a candidate's model directory with the
vllm role's own task. Run by ansible-playbook over a local connection: only the record file and set facts change."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
ALIAS = "assistant"
DIGEST_V2 = "b" * 64
PLAYBOOK = """
- name: Run role tasks
  hosts: node
  gather_facts: false
  tasks:
    - name: The tasks
      ansible.builtin.include_role:
        name: "namtech.internal_ai.{{ item.role }}"
        tasks_from: "{{ item.tasks }}"
      loop: %(steps)s
    - name: Keep what the tasks found
      ansible.builtin.copy:
        content: >-
          {{ {'sources': vllm_model_sources | default({}), 'candidate': rollout_candidate | default({})} | to_json }}
        dest: "%(out)s"
        mode: "0644"
"""


@pytest.fixture
def node(tmp_path):
    """A node's directories, the served name's archive already downloaded, and a runner of role task files."""
    models, archives = tmp_path / "models", tmp_path / "archives"
    models.mkdir()
    archives.mkdir()
    (archives / "tiny-chat-v1.tar.gz").write_bytes(b"the v1 archive")
    host_vars = {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "vllm_models_dir": str(models), "vllm_archive_dir": str(archives),
        "vllm_release_record_path": str(tmp_path / "releases.json"),
        "rollout_release_record_path": str(tmp_path / "releases.json"),
        "ai_engine": "vllm", "vllm_api_key": "unit-test-key",
        "vllm_models": [{"name": ALIAS, "port": 8000, "archive_url": "https://artifacts.test/tiny-chat-v1.tar.gz",
                         "archive_checksum": "sha256:https://artifacts.test/tiny-chat-v1.tar.gz.sha256"}],
    }
    inventory = {"all": {"children": {"ai_nodes": {"hosts": {"node": host_vars}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")

    def run(steps, extra_vars=None):
        out = tmp_path / "out.json"
        playbook = tmp_path / "play.yml"
        playbook.write_text(PLAYBOOK % {"steps": json.dumps([{"role": role, "tasks": tasks} for role, tasks in steps]),
                                        "out": out}, encoding="utf-8")
        finished = subprocess.run(
            [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
             "--extra-vars", json.dumps(extra_vars or {}), str(playbook)],
            check=False, capture_output=True, text=True, timeout=300,
            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build"), ANSIBLE_NOCOLOR="1",
                     ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_DEPRECATION_WARNINGS="0"))
        found = json.loads(out.read_text()) if finished.returncode == 0 else None
        return finished, found

    run.models, run.archives, run.record = models, archives, tmp_path / "releases.json"
    return run


def write_record(path, current):
    entry = {"current": current, "previous": [], "candidate": None}
    path.write_text(json.dumps({"format": 1, "aliases": {ALIAS: entry}}), encoding="utf-8")


VLLM_ROLE_STEPS = [("vllm", "release_read.yml"), ("vllm", "sources.yml"), ("vllm", "release.yml")]


def test_the_role_records_the_model_directory_and_the_archive_digest(node):
    finished, found = node(VLLM_ROLE_STEPS)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert found["sources"] == {ALIAS: {"model": f"{node.models}/tiny-chat-v1",
                                        "archive": f"{node.archives}/tiny-chat-v1.tar.gz"}}
    current = json.loads(node.record.read_text())["aliases"][ALIAS]["current"]
    assert (current["model"], current["digest"], current["engine"], current["deployed_by"]) == (
        f"{node.models}/tiny-chat-v1", hashlib.sha256(b"the v1 archive").hexdigest(), "openai", "vllm role")


def test_after_a_rollout_the_role_serves_the_recorded_version_and_says_so(node):
    rolled_out = {"model": f"{node.models}/tiny-chat-v2", "digest": DIGEST_V2, "engine": "openai",
                  "since": "2026-11-27T10:00:00Z", "deployed_by": "rollout-1"}
    write_record(node.record, rolled_out)
    before = node.record.read_text()
    finished, found = node(VLLM_ROLE_STEPS)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert found["sources"][ALIAS] == {"model": f"{node.models}/tiny-chat-v2", "archive": ""}
    assert (f"{ALIAS} serves {node.models}/tiny-chat-v2 (release record, set by upgrade_model.yml or "
            f"rollback_model.yml), not {node.models}/tiny-chat-v1 as vllm_models says.") in finished.stdout
    # Recording the version the record already names changes nothing, so a second ai_nodes.yml stays idempotent.
    assert node.record.read_text() == before


def test_the_role_can_be_told_to_serve_the_inventory_as_given(node):
    write_record(node.record, {"model": f"{node.models}/tiny-chat-v2", "digest": DIGEST_V2, "engine": "openai",
                               "since": "2026-11-27T10:00:00Z", "deployed_by": "rollout-1"})
    finished, found = node(VLLM_ROLE_STEPS[:2], {"vllm_follow_release_record": False})
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert found["sources"][ALIAS]["model"] == f"{node.models}/tiny-chat-v1"
    assert "as vllm_models says" not in finished.stdout


def test_the_rollout_finds_the_candidates_model_directory_with_the_vllm_role(node):
    finished, found = node([("rollout", "vllm_preflight.yml")], {
        "rollout_vllm_archive_url": "https://artifacts.test/tiny-chat-v2.tar.gz",
        "rollout_vllm_archive_checksum": "sha256:https://artifacts.test/tiny-chat-v2.tar.gz.sha256"})
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert found["candidate"] == {"model": f"{node.models}/tiny-chat-v2",
                                  "archive": f"{node.archives}/tiny-chat-v2.tar.gz"}


def test_a_candidate_directory_is_served_from_where_it_is(node):
    finished, found = node([("rollout", "vllm_preflight.yml")], {"rollout_vllm_path": "/srv/models/chat-v3"})
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert found["candidate"] == {"model": "/srv/models/chat-v3", "archive": ""}


@pytest.mark.parametrize("extra_vars", [
    {},
    {"rollout_vllm_archive_url": "https://artifacts.test/tiny-chat-v2.tar.gz"},
    {"rollout_vllm_path": "/srv/models/chat-v3", "rollout_on_failure": "all"},
    {"rollout_vllm_path": "/srv/models/chat-v3", "rollout_alias": "chatbot"},
], ids=["no-candidate", "no-checksum", "revert-all", "unknown-served-name"])
def test_the_rollout_refuses_what_it_cannot_do_on_vllm_nodes(node, extra_vars):
    finished = node([("rollout", "vllm_preflight.yml")], extra_vars)[0]
    assert finished.returncode != 0
    assert "Nothing changed. On vLLM nodes" in finished.stdout
    assert "rollout_vllm_archive_url with rollout_vllm_archive_checksum" in finished.stdout
