"""The ollama role on the lab's AI nodes: install from the artifact host, models and alias, private address only,
idempotence, upgrade and rollback of the binary, and a pull that fills the disk.

Run: cd /work/main && LAB_REUSE=1 .venv/bin/pytest tests/integration/test_ollama_role.py -rs
"""

import json
import re
import urllib.request
from pathlib import Path

import pytest
from lab.core import Lab

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "ai_nodes.yml"
PULL_PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "ollama_pull.yml"
COLLECTIONS = REPO / ".build"
ENV = {"ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS)}
OLD, NEW = "0.12.5-lab", "0.12.6-lab"
MODELS_DIR = "/srv/lab-disk/ollama/models"

pytestmark = pytest.mark.topology("cluster", "pro", "box")


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host."""
    counts = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        counts[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", fields)}
    return counts


def api(lab: Lab, node: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{lab.hosts[node].address}:11434{path}", timeout=10) as response:
        return json.loads(response.read())


def models(lab: Lab, node: str) -> dict[str, tuple[str, str]]:
    return {entry["name"]: (entry["digest"], entry["modified_at"]) for entry in api(lab, node, "/api/tags")["models"]}


def deploy(lab: Lab, extra_vars: dict | None = None, args: tuple[str, ...] = ()) -> dict[str, dict[str, int]]:
    done = lab.run_playbook(PLAYBOOK, extra_vars, env=ENV, args=args, check=False)
    assert done.returncode == 0, done.stdout[-6000:]
    return recap(done.stdout)


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> Lab:
    """Every AI node deployed once by the role, as the lab inventory describes it."""
    assert (COLLECTIONS / "ansible_collections" / "namtech" / "internal_ai").exists(), "run make bootstrap first"
    deploy(lab)
    return lab


def test_every_ai_node_serves_the_pinned_model_and_its_alias(deployed: Lab) -> None:
    lab = deployed
    pinned = yaml_inventory_digest(lab)
    for node in lab.group("ai_nodes"):
        served = {name: digest for name, (digest, _at) in models(lab, node).items()}
        assert served == {"lab-chat:v1": pinned, "assistant:latest": pinned}, node
        assert api(lab, node, "/api/version") == {"version": NEW}


def test_the_api_listens_on_the_private_address_only(deployed: Lab) -> None:
    lab = deployed
    for node in lab.group("ai_nodes"):
        private = f"{lab.hosts[node].address}:11434"
        listeners = [word for word in lab.ssh(node, "ss -Hltn 'sport = :11434'").stdout.split() if ":11434" in word]
        assert listeners == [private], (node, listeners)
        local = lab.ssh(node, "curl -sS -m 5 http://127.0.0.1:11434/api/tags", check=False)
        assert local.returncode == 7 and "Couldn't connect to server" in local.stderr, (node, local)


def test_a_second_run_changes_nothing(deployed: Lab) -> None:
    counts = deploy(deployed)
    assert {node: counts[node]["changed"] for node in deployed.group("ai_nodes")} == dict.fromkeys(
        deployed.group("ai_nodes"), 0)


def test_check_mode_on_deployed_nodes_reports_nothing_to_change(deployed: Lab) -> None:
    counts = deploy(deployed, args=("--check", "--diff"))
    assert all(counts[node]["changed"] == 0 and counts[node]["failed"] == 0 for node in deployed.group("ai_nodes"))


def test_version_change_upgrades_and_rolls_back_with_the_models_untouched(deployed: Lab) -> None:
    lab = deployed
    nodes = lab.group("ai_nodes")
    before = {node: models(lab, node) for node in nodes}
    try:
        deploy(lab, {"ollama_version": OLD})
        for node in nodes:
            assert api(lab, node, "/api/version") == {"version": OLD}, node
            assert lab.ssh(node, "readlink /opt/ollama/current").stdout.strip() == f"/opt/ollama/{OLD}"
            assert models(lab, node) == before[node], node
    finally:
        counts = deploy(lab, {"ollama_version": NEW})
    for node in nodes:
        assert api(lab, node, "/api/version") == {"version": NEW}, node
        assert models(lab, node) == before[node], node
        kept = set(lab.ssh(node, "ls /opt/ollama").stdout.split())
        assert {OLD, NEW, "current"} <= kept, (node, kept)
        # Going back switches the link to the kept version: nothing downloaded or unpacked, one restart.
        assert counts[node]["changed"] == 2, (node, counts)


def test_a_pull_that_fills_the_disk_fails_clearly_and_leaves_no_half_model(healthy_lab: Lab, deployed: Lab) -> None:
    lab = healthy_lab
    node = lab.group("ai_nodes")[0]
    with lab.disk_full(node):
        done = lab.run_playbook(PULL_PLAYBOOK, {"target": node, "model": "lab-chat:v2"}, env=ENV, check=False)
        leftovers = lab.ssh(node, f"find {MODELS_DIR} -name '*-partial' -o -path '*/lab-chat/v2'").stdout.split()
    assert done.returncode == 2, done.stdout
    assert "cannot pull lab-chat:v2 (nothing of it was kept): " in done.stdout
    assert "no space left on device" in done.stdout.lower()
    assert "Free space on the disk that holds the server's models (OLLAMA_MODELS) and run the task again" in done.stdout
    assert leftovers == []
    assert set(models(lab, node)) == {"lab-chat:v1", "assistant:latest"}


def yaml_inventory_digest(lab: Lab) -> str:
    import yaml  # noqa: PLC0415 - only this helper reads the inventory

    inventory = yaml.safe_load(lab.inventory_path.read_text())
    return inventory["all"]["children"]["ai_nodes"]["vars"]["lab_model_digests"]["lab-chat:v1"]


def test_preflight_stops_a_bad_setting_with_what_to_fix(deployed: Lab) -> None:
    done = deployed.run_playbook(PLAYBOOK, {"ollama_listen_address": "0.0.0.0"}, env=ENV,
                                 args=("--tags", "preflight"), check=False)
    assert done.returncode == 2, done.stdout
    assert "binding every interface is refused" in done.stdout
    assert "Set ollama_listen_address to the node's private address (got '0.0.0.0'" in done.stdout


WIPE = ("systemctl disable --now ollama.service; rm -rf /etc/systemd/system/ollama.service "
        "/etc/systemd/system/ollama.service.d /opt/ollama /usr/local/bin/ollama /etc/profile.d/ollama.sh "
        f"/usr/local/sbin/ollama-unit-check {MODELS_DIR}; systemctl daemon-reload")


def test_check_mode_on_a_new_node_reports_the_install_and_makes_none(deployed: Lab) -> None:
    lab = deployed
    node = lab.group("ai_nodes")[-1]
    lab.ssh(node, WIPE)
    try:
        counts = deploy(lab, args=("--check", "--limit", node))
        assert counts[node]["changed"] > 0 and counts[node]["failed"] == 0, counts
        assert lab.ssh(node, "ls /opt/ollama /etc/systemd/system/ollama.service", check=False).returncode == 2
    finally:
        counts = deploy(lab, args=("--limit", node))
    assert counts[node]["changed"] > 0
    assert set(models(lab, node)) == {"lab-chat:v1", "assistant:latest"}
