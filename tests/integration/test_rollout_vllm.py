"""upgrade_model.yml and rollback_model.yml on real vLLM nodes under continuous load through the load balancer.

The vllm lab serves tiny-chat-v1 as `assistant` (tests/lab/vllm/inventory_vars.py); tiny-chat-v2 has the same shape,
tiny-chat-slow is about 20 times bigger, tiny-chat-broken cannot be loaded (tests/lab/vllm/models.py). A swap is a
drained restart of the node's vllm-assistant unit on another model directory; the version a node serves is the `root`
of its /v1/models. The tests run in order, each starting where the previous one ended.

Run: make lab-up TOPOLOGY=pro ENGINE=vllm && LAB_TOPOLOGY=pro LAB_ENGINE=vllm LAB_REUSE=1 \
     .venv/bin/pytest tests/integration/test_rollout_vllm.py -p no:cacheprovider -rs --timeout 1800 -s
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from lab.inventory import EVAL_SUITES_DIR
from lab.paths import INVENTORY_PATH
from lab.proc import changed_per_host
from lab.traffic import Traffic
from lab.vllm.inventory_vars import LAB_API_KEY, LAB_PORT

pytestmark = [pytest.mark.topology("pro"), pytest.mark.engine("vllm")]

RECORD = "/var/lib/namtech_ai/releases.json"
UNIT = "vllm-assistant.service"
# The lab inventory names no suite for vLLM nodes and gives them no backup settings: the runs say both.
COMMON = {"rollout_eval_suite": str(EVAL_SUITES_DIR / "tiny-chat.yml"), "rollout_skip_backup": True}


def candidate(name):
    """The extra vars that make the lab archive ``name`` the candidate."""
    return {"rollout_vllm_archive_url": "{{ lab_vllm_models_url }}/%s.tar.gz" % name,
            "rollout_vllm_archive_checksum": "sha256:{{ lab_vllm_models_url }}/%s.tar.gz.sha256" % name}


@pytest.fixture(scope="module")
def rollout(deployed, tmp_path_factory):
    """Run a rollout playbook with continuous streamed and non-streamed chat completions through the load balancer."""
    lab = deployed
    reports = tmp_path_factory.mktemp("reports")
    balancer = lab.hosts[lab.group("loadbalancers")[0]].address

    def run(playbook, extra_vars, check=True):
        with Traffic(f"http://{balancer}:{LAB_PORT}", "openai", workers=3) as load:
            assert load.wait_for_answers(5, timeout=60)
            done = lab.run_playbook(playbook, dict(COMMON, **extra_vars, rollout_reports_dir=str(reports)),
                                    check=check, timeout=1500)
            assert load.wait_for_answers(5, timeout=60)
        return done, load

    run.reports = reports
    return run


def model_dir(lab, node, name):
    return f"{lab.hosts[node].disk_path}/vllm/models/{name}"


def roots(lab):
    """``{node: root of assistant}`` from every node's /v1/models: the model directory vLLM serves."""
    served = {}
    for node in lab.group("ai_nodes"):
        answer = httpx.get(f"http://{lab.hosts[node].address}:{LAB_PORT}/v1/models",
                           headers={"Authorization": f"Bearer {LAB_API_KEY}"}, timeout=10)
        served[node] = {model["id"]: model["root"] for model in answer.json()["data"]}["assistant"]
    return served


def on_version(lab, name):
    return {node: model_dir(lab, node, name) for node in lab.group("ai_nodes")}


def records(lab):
    return {node: json.loads(lab.ssh(node, f"cat {RECORD}").stdout)["aliases"]["assistant"]
            for node in lab.group("ai_nodes")}


def archive_digest(lab, name):
    """The sha256 of the lab archive, as its .sha256 file on the artifact host says (read from an AI node, which
    downloads from there)."""
    models_url = yaml.safe_load(INVENTORY_PATH.read_text())["all"]["vars"]["lab_artifact_url"] + "/models"
    node = lab.group("ai_nodes")[0]
    return lab.ssh(node, ["curl", "-fsS", f"{models_url}/{name}.tar.gz.sha256"]).stdout.split()[0]


def unit_started(lab):
    """``{node: when vllm-assistant last started}``: unchanged means not restarted."""
    return {node: lab.ssh(node, ["systemctl", "show", UNIT, "-p", "ActiveEnterTimestamp", "--value"]).stdout.strip()
            for node in lab.group("ai_nodes")}


def last_report(rollout):
    return json.loads(sorted(rollout.reports.glob("rollout-*.json"))[-1].read_text())


def test_the_lab_starts_on_v1_with_a_release_record(lab, deployed):
    assert roots(lab) == on_version(lab, "tiny-chat-v1")
    for node, record in records(lab).items():
        assert record["current"]["model"] == model_dir(lab, node, "tiny-chat-v1"), node
        assert record["current"]["digest"] == archive_digest(lab, "tiny-chat-v1"), node
        assert record["current"]["engine"] == "openai", node


def test_upgrade_to_v2_restarts_each_node_drained_and_fails_no_request(lab, rollout):
    done, load = rollout("playbooks/upgrade_model.yml", candidate("tiny-chat-v2"))
    assert load.failures == []
    assert load.ok > 20
    assert roots(lab) == on_version(lab, "tiny-chat-v2")
    for node, record in records(lab).items():
        assert record["current"]["model"] == model_dir(lab, node, "tiny-chat-v2"), node
        assert record["current"]["digest"] == archive_digest(lab, "tiny-chat-v2"), node
        assert record["previous"][0]["model"] == model_dir(lab, node, "tiny-chat-v1"), node
        assert record["previous"][0]["digest"] == archive_digest(lab, "tiny-chat-v1"), node
        assert record["candidate"] is None, node
    report = last_report(rollout)
    assert [node["status"] for node in report["nodes"]] == ["upgraded"] * len(lab.group("ai_nodes"))
    assert report["evaluation"]["passed"] is True
    assert "| node | status | before | after | gate | seconds |" in done.stdout


def test_a_second_upgrade_run_changes_nothing(lab, rollout):
    started = unit_started(lab)
    done, load = rollout("playbooks/upgrade_model.yml", candidate("tiny-chat-v2"))
    assert load.failures == []
    assert set(changed_per_host(done.stdout).values()) == {0}
    assert unit_started(lab) == started


def test_the_engine_playbook_keeps_the_rolled_out_version(lab, deployed):
    """The inventory still names tiny-chat-v1: the vllm role follows the release record, says so, restarts nothing."""
    started = unit_started(lab)
    done = lab.run_playbook("playbooks/ai_nodes.yml", timeout=1800)
    assert "(release record, set by upgrade_model.yml or rollback_model.yml)" in done.stdout
    assert roots(lab) == on_version(lab, "tiny-chat-v2")
    assert unit_started(lab) == started
    assert {node: record["current"]["model"] for node, record in records(lab).items()} == \
        on_version(lab, "tiny-chat-v2")


def test_the_evaluation_rejects_the_slow_version_before_any_node_changes(lab, rollout):
    before = records(lab)
    done, load = rollout("playbooks/upgrade_model.yml", candidate("tiny-chat-slow"), check=False)
    assert done.returncode != 0
    assert "The evaluation rejected tiny-chat-slow.tar.gz; no production node changed." in done.stdout
    assert "max_latency_ratio" in done.stdout
    assert load.failures == []
    # The canary was restarted on the candidate for the evaluation and is back on v2.
    assert roots(lab) == on_version(lab, "tiny-chat-v2")
    assert {node: record["current"] for node, record in records(lab).items()} == \
        {node: record["current"] for node, record in before.items()}


def test_rollback_returns_every_node_to_v1(lab, rollout):
    done, load = rollout("playbooks/rollback_model.yml", {})
    assert load.failures == []
    assert "rolled back" in done.stdout
    assert roots(lab) == on_version(lab, "tiny-chat-v1")
    for node, record in records(lab).items():
        assert record["current"]["model"] == model_dir(lab, node, "tiny-chat-v1"), node
        assert record["previous"][0]["model"] == model_dir(lab, node, "tiny-chat-v2"), node


def test_a_version_that_fails_to_load_stops_on_the_first_node_which_returns_to_v1(lab, rollout):
    first, *others = lab.group("ai_nodes")
    started = unit_started(lab)
    # vLLM gives up on a broken model within seconds; systemd restarts it until the role's wait ends.
    done, load = rollout("playbooks/upgrade_model.yml",
                         dict(candidate("tiny-chat-broken"), rollout_skip_eval=True, vllm_health_timeout=240),
                         check=False)
    assert done.returncode != 0
    assert f"{first} failed during the swap to {model_dir(lab, first, 'tiny-chat-broken')} (" in done.stdout
    assert f"It serves {model_dir(lab, first, 'tiny-chat-v1')} again and is back in rotation" in done.stdout
    assert load.failures == []
    assert roots(lab) == on_version(lab, "tiny-chat-v1")
    now = unit_started(lab)
    assert now[first] != started[first]
    assert all(now[node] == started[node] for node in others)
    current = records(lab)
    for node, record in current.items():
        assert record["current"]["model"] == model_dir(lab, node, "tiny-chat-v1"), node
        assert all("tiny-chat-broken" not in version["model"] for version in record["previous"]), node
    assert current[first]["candidate"] is None
    report = last_report(rollout)
    assert [(node["node"], node["status"]) for node in report["nodes"]] == [(first, "rolled back after a failed swap")]
