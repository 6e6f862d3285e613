"""The vllm role with real vLLM (the CPU build from the artifact host's wheelhouse) on a vllm lab's AI nodes:
each node serves tiny-chat-v1 as ``assistant``, behind its API key, tidy, and a second run changes nothing.

Run: LAB_TOPOLOGY=pro LAB_ENGINE=vllm .venv/bin/pytest tests/integration/test_vllm_role.py -rs -s
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from lab.proc import changed_per_host
from lab.vllm.inventory_vars import LAB_API_KEY, LAB_PORT

pytestmark = pytest.mark.engine("vllm")

REPO = Path(__file__).resolve().parents[2]
SERVED_NAME = "assistant"
UNIT = f"vllm-{SERVED_NAME}.service"
PLAYBOOK = """\
- name: Deploy vLLM with the vllm role
  hosts: ai_nodes
  gather_facts: true
  roles:
    - role: vllm
"""


def http(url: str, key: str | None = None, body: dict | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def deploy(lab, tmp_path_factory):
    """Run the role; the first run's output and duration are kept for the tests and printed."""
    playbook = tmp_path_factory.mktemp("vllm") / "vllm.yml"
    playbook.write_text(PLAYBOOK)

    def run() -> tuple[str, float]:
        started = time.monotonic()
        done = lab.run_playbook(playbook, timeout=2400, env={"ANSIBLE_ROLES_PATH": str(REPO / "roles")})
        return done.stdout, time.monotonic() - started

    output, seconds = run()
    print(f"\nvllm role, first run on {lab.group('ai_nodes')}: {seconds:.0f}s")
    return {"first": output, "seconds": seconds, "run": run}


@pytest.fixture(scope="module")
def nodes(lab, deploy) -> dict[str, str]:
    """``{node: base URL}`` of every AI node's server."""
    return {node: f"http://{lab.hosts[node].address}:{LAB_PORT}" for node in lab.group("ai_nodes")}


def test_every_node_answers_health(nodes) -> None:
    for node, url in nodes.items():
        assert http(f"{url}/health")[0] == 200, node


def test_models_lists_the_served_name_and_the_versioned_path(lab, nodes) -> None:
    for node, url in nodes.items():
        status, body = http(f"{url}/v1/models", key=LAB_API_KEY)
        assert status == 200, (node, body)
        (model,) = json.loads(body)["data"]
        assert model["id"] == SERVED_NAME
        assert model["root"] == f"{lab.hosts[node].disk_path}/vllm/models/tiny-chat-v1"
        assert model["max_model_len"] == 1024


def test_v1_needs_the_api_key_and_health_does_not(nodes) -> None:
    for url in nodes.values():
        assert http(f"{url}/v1/models")[0] == 401
        assert http(f"{url}/v1/models", key="wrong")[0] == 401
        assert http(f"{url}/health")[0] == 200


def test_the_model_answers_a_chat(nodes) -> None:
    for url in nodes.values():
        status, body = http(f"{url}/v1/chat/completions", key=LAB_API_KEY, body={
            "model": SERVED_NAME, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4,
        })
        assert status == 200, body
        assert json.loads(body)["usage"]["completion_tokens"] == 4


def test_the_unit_is_hardened_and_the_key_file_private(lab, deploy) -> None:
    for node in lab.group("ai_nodes"):
        shown = lab.ssh(node, ["systemctl", "show", UNIT, "-p", "User", "-p", "NoNewPrivileges", "-p",
                               "ProtectSystem", "-p", "ProtectHome", "-p", "PrivateTmp"]).stdout.split()
        assert sorted(shown) == sorted(["User=vllm", "NoNewPrivileges=yes", "ProtectSystem=strict",
                                        "ProtectHome=yes", "PrivateTmp=yes"])
        assert lab.ssh(node, ["stat", "-c", "%a %U", f"/etc/vllm/{SERVED_NAME}.env"]).stdout.split() == ["600", "root"]
        assert LAB_API_KEY not in lab.ssh(node, ["ps", "-eo", "args"]).stdout


def test_the_kv_cache_is_sized_explicitly(lab, deploy) -> None:
    for node in lab.group("ai_nodes"):
        command = lab.ssh(node, ["systemctl", "show", UNIT, "-p", "ExecStart", "--value"]).stdout
        assert "--kv-cache-memory-bytes 64M" in command


def test_no_files_are_left_in_tmp_or_caches(lab, deploy) -> None:
    for node in lab.group("ai_nodes"):
        leftovers = lab.ssh(node, "find /tmp /var/tmp -type f; ls -A /root/.cache /var/lib/vllm/.cache 2>/dev/null",
                            check=False).stdout
        assert leftovers.strip() == "", f"{node}: {leftovers}"


def test_a_second_run_changes_nothing(lab, deploy) -> None:
    output, seconds = deploy["run"]()
    print(f"\nvllm role, second run: {seconds:.0f}s")
    changed = changed_per_host(output)
    assert set(changed) >= set(lab.group("ai_nodes"))
    assert all(count == 0 for count in changed.values()), changed
