"""upgrade_model.yml and rollback_model.yml on Ollama nodes under continuous load through the load balancers.

The lab serves lab-chat:v1 as `assistant`; lab-chat:v2 is as good and faster; lab-chat:bad answers wrong and
slowly (tests/lab/artifacts/models.py). The tests run in order, each starting where the previous one ended.
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from lab.paths import INVENTORY_PATH
from lab.proc import changed_per_host
from lab.traffic import Traffic

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama")]

RECORD = "/var/lib/namtech_ai/releases.json"


@pytest.fixture(scope="module")
def rollout(deployed, tmp_path_factory):
    """Run a rollout playbook with continuous streamed and non-streamed load on the clients' endpoint."""
    lab = deployed
    reports = tmp_path_factory.mktemp("reports")
    balancer = lab.topology.vip or lab.hosts[lab.group("loadbalancers")[0]].address

    def run(playbook, extra_vars, check=True):
        with Traffic(f"http://{balancer}:11434", "mixed", workers=3) as load:
            assert load.wait_for_answers(5, timeout=30)
            done = lab.run_playbook(playbook, dict(extra_vars, rollout_reports_dir=str(reports)), check=check,
                                    timeout=1200)
            assert load.wait_for_answers(5, timeout=30)
        return done, load

    run.reports = reports
    return run


def alias_digests(lab):
    """``{node: digest of assistant:latest}`` from every node's /api/tags."""
    digests = {}
    for node in lab.group("ai_nodes"):
        models = httpx.get(f"http://{lab.hosts[node].address}:11434/api/tags", timeout=10).json()["models"]
        digests[node] = {model["name"]: model["digest"] for model in models}["assistant:latest"]
    return digests


def records(lab):
    return {node: json.loads(lab.ssh(node, f"cat {RECORD}").stdout)["aliases"]["assistant"]
            for node in lab.group("ai_nodes")}


def digest(lab, name):
    inventory = yaml.safe_load(INVENTORY_PATH.read_text())
    return inventory["all"]["children"]["ai_nodes"]["vars"]["lab_model_digests"][name]


def test_upgrade_to_the_faster_version_fails_no_request(lab, rollout):
    done, load = rollout("playbooks/upgrade_model.yml", {"rollout_model": "lab-chat:v2"})
    assert load.failures == []
    assert load.ok > 20
    assert set(alias_digests(lab).values()) == {digest(lab, "lab-chat:v2")}
    for node, record in records(lab).items():
        assert record["current"]["model"] == "lab-chat:v2", node
        assert record["previous"][0]["model"] == "lab-chat:v1", node
        assert record["previous"][0]["digest"] == digest(lab, "lab-chat:v1"), node
    report = json.loads(sorted(rollout.reports.glob("rollout-*.json"))[-1].read_text())
    assert [node["status"] for node in report["nodes"]] == ["upgraded"] * len(lab.group("ai_nodes"))
    assert report["evaluation"]["passed"] is True
    assert "| node | status | before | after | gate | seconds |" in done.stdout


def test_a_second_upgrade_run_changes_nothing(lab, rollout):
    done, load = rollout("playbooks/upgrade_model.yml", {"rollout_model": "lab-chat:v2"})
    assert load.failures == []
    assert set(changed_per_host(done.stdout).values()) == {0}


def test_the_evaluation_rejects_the_bad_version_before_any_node_changes(lab, rollout):
    before = records(lab)
    done, load = rollout("playbooks/upgrade_model.yml", {"rollout_model": "lab-chat:bad"}, check=False)
    assert done.returncode != 0
    assert "The evaluation rejected lab-chat:bad; no production node changed." in done.stdout
    assert load.failures == []
    assert set(alias_digests(lab).values()) == {digest(lab, "lab-chat:v2")}
    assert {node: record["current"] for node, record in records(lab).items()} == \
        {node: record["current"] for node, record in before.items()}


def test_without_evaluation_the_first_gate_fails_and_the_node_rolls_back(lab, rollout):
    first, *others = lab.group("ai_nodes")
    done, load = rollout("playbooks/upgrade_model.yml", {"rollout_model": "lab-chat:bad", "rollout_skip_eval": True},
                         check=False)
    assert done.returncode != 0
    assert f"{first} failed during the swap to lab-chat:bad (Health gate:" in done.stdout
    assert load.failures == []
    assert set(alias_digests(lab).values()) == {digest(lab, "lab-chat:v2")}
    now = records(lab)
    assert all(now[node]["current"]["model"] == "lab-chat:v2" for node in lab.group("ai_nodes"))
    assert all(record["model"] != "lab-chat:bad" for node in others for record in now[node]["previous"])
    report = json.loads(sorted(rollout.reports.glob("rollout-*.json"))[-1].read_text())
    assert [(node["node"], node["status"]) for node in report["nodes"]] == [(first, "rolled back after a failed swap")]


def test_rollback_returns_every_node_to_the_previous_version(lab, rollout):
    done, load = rollout("playbooks/rollback_model.yml", {})
    assert load.failures == []
    assert "rolled back" in done.stdout
    assert set(alias_digests(lab).values()) == {digest(lab, "lab-chat:v1")}
    for node, record in records(lab).items():
        assert record["current"]["model"] == "lab-chat:v1", node


def test_a_hand_made_alias_change_stops_the_next_rollout_before_it_starts(lab, rollout):
    node = lab.group("ai_nodes")[-1]
    repoint = f"url=http://{lab.hosts[node].address}:11434 name=assistant copy_from=%s"
    lab.ansible(node, "namtech.internal_ai.ollama_model", repoint % "lab-chat:v2")
    try:
        done, load = rollout("playbooks/upgrade_model.yml", {"rollout_model": "lab-chat:v2"}, check=False)
    finally:
        lab.ansible(node, "namtech.internal_ai.ollama_model", repoint % "lab-chat:v1")
    assert done.returncode != 0
    assert f"Nothing changed. Unhealthy nodes: {node}: health gate failed for assistant" in done.stdout
    assert load.failures == []
    assert set(alias_digests(lab).values()) == {digest(lab, "lab-chat:v1")}


def engine_versions(lab):
    return {node: httpx.get(f"http://{lab.hosts[node].address}:11434/api/version", timeout=10).json()["version"]
            for node in lab.group("ai_nodes")}


def test_engine_upgrade_and_back_fails_no_request(lab, rollout):
    installed = set(engine_versions(lab).values())
    (other,) = {"0.12.5-lab", "0.12.6-lab"} - installed
    done, load = rollout("playbooks/upgrade_engine.yml", {"rollout_engine_version": other})
    assert load.failures == []
    assert "engine upgraded" in done.stdout
    assert set(engine_versions(lab).values()) == {other}
    assert set(alias_digests(lab).values()) == {digest(lab, "lab-chat:v1")}
    load = rollout("playbooks/upgrade_engine.yml", {"rollout_engine_version": next(iter(installed))})[1]
    assert load.failures == []
    assert set(engine_versions(lab).values()) == installed


def test_an_engine_version_that_cannot_be_installed_stops_on_the_first_node(lab, rollout):
    before = engine_versions(lab)
    first = lab.group("ai_nodes")[0]
    done, load = rollout("playbooks/upgrade_engine.yml", {"rollout_engine_version": "9.9.9-missing"}, check=False)
    assert done.returncode != 0
    assert f"{first} failed during the upgrade to Ollama 9.9.9-missing" in done.stdout
    assert load.failures == []
    assert engine_versions(lab) == before
