"""The example inventories, as shipped, on the lab topology of the same name; and a running AI Box moved to an AI Pro
by editing its inventory and following docs/tiers.md, while its clients keep calling it.

Each run layers lab.site_layer over an example (addresses, connection, the vault's secrets, the lab's models): what a
site changes in its copy. These tests replace the lab inventory's deployment with the example's, so they run after
every other test of the session (marker ``redeploys``); the next session's ``deployed`` fixture puts it back.
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml
from lab import site_layer
from lab.core import Lab
from lab.inventory import LAB_AUTH_HEADERS, ai_endpoint_url
from lab.proc import changed_per_host, wait_for
from lab.traffic import Traffic

pytestmark = [pytest.mark.engine("ollama"), pytest.mark.redeploys, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
ENGINE_PORT = 11434


def run(lab: Lab, inventory: str | Path, playbook: str, extra_vars: dict | None = None, *args: str) -> str:
    return lab.run_playbook(REPO / "playbooks" / playbook, extra_vars, args=args, timeout=1800,
                            inventory_args=site_layer.inventory_args(inventory)).stdout


def address(lab: Lab, host: str) -> str:
    return lab.hosts[host].address


def generation_status(url: str, model: str = "assistant", headers: dict | None = None) -> int:
    body = {"model": model, "prompt": "Say hello.", "stream": False, "options": {"num_predict": 4}}
    return httpx.post(url + "/api/generate", json=body, headers=headers, timeout=30).status_code


def embeddings(url: str) -> list:
    answer = httpx.post(url + "/api/embed", json={"model": "embeddings", "input": "a document"},
                        headers=LAB_AUTH_HEADERS, timeout=30)
    answer.raise_for_status()
    return answer.json()["embeddings"]


def prometheus_targets(lab: Lab, monitor: str) -> list[dict]:
    """The active targets' labels and health, from the Prometheus on ``monitor`` (with the example's login)."""
    answer = httpx.get("http://%s:9090/api/v1/targets" % address(lab, monitor), params={"state": "active"},
                       auth=site_layer.MONITORING_LOGIN, timeout=10)
    answer.raise_for_status()
    return [dict(target["labels"], health=target["health"]) for target in answer.json()["data"]["activeTargets"]]


def every_target_up(lab: Lab, monitor: str, hosts: list[str], tier: str, jobs: tuple[str, ...] = ()) -> list | None:
    """The targets (of ``jobs``, or all) once each of ``hosts`` has one, all are up and carry ``tier``; else None."""
    targets = [target for target in prometheus_targets(lab, monitor) if not jobs or target["job"] in jobs]
    healthy = all(target["health"] == "up" and target.get("tier") == tier for target in targets)
    return targets if healthy and set(hosts) <= {target.get("node") for target in targets} else None


def served_digest(lab: Lab, node: str, model: str) -> str:
    """From the node itself: past a load balancer only the load balancers and monitoring reach the engine."""
    url = "http://%s:%d/api/tags" % (address(lab, node), ENGINE_PORT)
    tags = json.loads(lab.ssh(node, ["curl", "-sSf", url]).stdout)
    return next(entry["digest"] for entry in tags["models"] if entry["name"] == model)


def unit_state(lab: Lab, host: str, unit: str) -> str:
    return lab.ssh(host, ["systemctl", "is-active", unit], check=False).stdout.strip()


def example_hosts(tier: str) -> dict:
    return yaml.safe_load((site_layer.TIERS_DIR / tier / "hosts.yml").read_text())


def write_hosts(site: Path, hosts: dict) -> None:
    (site / "hosts.yml").write_text("---\n" + yaml.safe_dump(hosts, sort_keys=False))


# While the box's clients still call ai1 directly, its firewall must keep admitting them (docs/tiers.md, step 2).
KEEP_DIRECT_CLIENTS = 'firewall_engine_extra_sources: "{{ ai_client_networks }}"\n'


def keep_direct_clients(site: Path, keep: bool) -> None:
    settings = site / "group_vars" / "all" / "10_site.yml"
    text = settings.read_text().replace(KEEP_DIRECT_CLIENTS, "")
    settings.write_text(text + KEEP_DIRECT_CLIENTS if keep else text)


@pytest.mark.topology("pro")
def test_a_running_box_moves_to_pro_by_editing_its_inventory_without_downtime(lab: Lab, tmp_path: Path) -> None:
    """docs/tiers.md "AI Box to AI Pro", step by step, with the box's clients calling ai1 all along."""
    site = tmp_path / "site"
    shutil.copytree(site_layer.TIERS_DIR / "box", site)
    run(lab, site, "site.yml")
    box_url = "http://%s:%d" % (address(lab, "ai1"), ENGINE_PORT)  # a box's clients call its node
    assert generation_status(box_url) == 200
    assert wait_for(lambda: every_target_up(lab, "ai1", ["ai1"], "box"), timeout=120)
    digest = served_digest(lab, "ai1", "lab-chat:v1")

    # New connections, as the firewall lets established ones finish whatever its rules become.
    with Traffic(box_url, "mixed", workers=2, fresh_connections=True) as box_clients:
        assert box_clients.wait_for_answers(5)
        # 1. Back up the box, and check that the backup restores.
        out = run(lab, site, "backup.yml")
        assert "Backed up ai1 as" in out, out[-3000:]
        run(lab, site, "restore.yml", {"restore_hosts": "ai1", "restore_dry_run": True})
        # 2. The new hosts into hosts.yml: the pro's, with ai1 kept in monitoring for now.
        grown = example_hosts("pro")
        grown["all"]["children"]["monitoring"]["hosts"]["ai1"] = None
        write_hosts(site, grown)
        keep_direct_clients(site, True)
        # 3. Monitoring first: mon1 as well as ai1 watch every host, labelled pro (HAProxy comes in step 4).
        run(lab, site, "monitoring.yml")
        pro_hosts = ["ai1", "ai2", "lb1", "mon1"]
        for monitor in ("ai1", "mon1"):
            watched = partial(every_target_up, lab, monitor, pro_hosts, "pro", ("node", "llm_exporter"))
            assert wait_for(watched, timeout=120), prometheus_targets(lab, monitor)
        # 4. The new AI node through the health gate, behind the new load balancer.
        run(lab, site, "scale_out.yml", {"scale_out_nodes": ["ai2"]})
        assert box_clients.wait_for_answers(5)
        # 5. The clients move to the load balancer, with their team's key.
        pro_url = ai_endpoint_url(lab.topology)
        # The example gives chat-frontend no limit of its own: the default, 600 requests a minute.
        pro_clients = Traffic(pro_url, "mixed", workers=2, rate=3).start()
        assert pro_clients.wait_for_answers(10)
    try:
        # 6. Monitoring off the AI node, and the engine closed to the clients that moved.
        write_hosts(site, example_hosts("pro"))
        keep_direct_clients(site, False)
        run(lab, site, "monitoring.yml")
        for unit in ("prometheus", "prometheus-alertmanager"):
            lab.ansible("ai1", "ansible.builtin.systemd_service", "name=%s state=stopped enabled=false" % unit,
                        inventory_args=site_layer.inventory_args(site))
        # 7. Converge.
        converged = run(lab, site, "site.yml")
        assert pro_clients.wait_for_answers(5)
    finally:
        pro_clients.stop()

    print("\nbox clients on ai1 until they moved: %d answers, %d failed; pro clients on lb1: %d answers, %d failed"
          % (box_clients.ok, len(box_clients.failures), pro_clients.ok, len(pro_clients.failures)))
    assert box_clients.failures == [] and pro_clients.failures == []
    assert generation_status(pro_url) == 401, "the load balancer asks for a key"
    assert served_digest(lab, "ai2", "lab-chat:v1") == digest
    assert wait_for(lambda: every_target_up(lab, "mon1", pro_hosts, "pro"), timeout=120)
    assert unit_state(lab, "ai1", "prometheus") == "inactive"
    checked = changed_per_host(run(lab, site, "site.yml", None, "--check"))
    assert set(pro_hosts) <= set(checked) and set(checked.values()) == {0}, (checked, converged[-3000:])


@pytest.mark.topology("box", "pro", "cluster")
def test_the_example_inventory_of_the_lab_topology_deploys_serves_and_converges(lab: Lab) -> None:
    tier = lab.topology.name
    hosts = example_hosts(tier)["all"]["children"]
    members = list(dict.fromkeys(name for group in hosts.values() for name in (group.get("hosts") or {})))
    run(lab, tier, "site.yml")
    url = ai_endpoint_url(lab.topology)
    assert generation_status(url, headers=LAB_AUTH_HEADERS) == 200
    assert len(embeddings(url)[0]) > 0
    if tier != "box":
        assert generation_status(url) == 401, "the load balancer asks for a key"
    monitor = next(iter(hosts["monitoring"]["hosts"]))
    assert wait_for(lambda: every_target_up(lab, monitor, members, tier), timeout=120)
    second = changed_per_host(run(lab, tier, "site.yml"))
    assert set(members) <= set(second) and set(second.values()) == {0}, "a second site.yml changed: %s" % second
