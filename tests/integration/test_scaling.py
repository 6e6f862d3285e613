"""scale_in.yml and scale_out.yml under continuous load through the load balancer: no request may fail.

On the cluster a spare lab host (group spare_ai_nodes) becomes a fourth AI node: the test adds it to ai_nodes with
an inventory layered on the lab's, as an operator adds a host to theirs, scales it out, sees it serve, scales it in.
"""

from __future__ import annotations

import pytest
import yaml
from lab.proc import wait_for
from lab.traffic import Traffic

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama")]


def backend_row(lab, lb, node):
    """The node's `show stat` fields on a load balancer, or None when it is no server of the backend."""
    table = lab.ssh(lb, "echo 'show stat' | socat -t 5 stdio unix-connect:/run/haproxy/admin.sock").stdout
    for line in table.splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == "ai_ollama" and fields[1] == node:
            return fields
    return None


def backend_status(lab, lb, node):
    row = backend_row(lab, lb, node)
    return row[17] if row else None


def sessions_served(lab, lb, node):
    """Sessions the load balancer has sent to the node since its last reload (`stot`)."""
    row = backend_row(lab, lb, node)
    return int(row[7] or 0) if row else 0


@pytest.fixture(scope="module")
def balanced(deployed):
    lab = deployed
    lb = lab.group("loadbalancers")[0]
    return lb, "http://%s:11434" % lab.hosts[lb].address


def test_scale_in_then_out_under_load_fails_no_request(lab, balanced):
    lb, url = balanced
    node = lab.group("ai_nodes")[-1]
    with Traffic(url, "mixed", workers=2) as load:
        assert load.wait_for_answers(5, timeout=30)
        lab.run_playbook("playbooks/scale_in.yml", {"scale_in_nodes": [node]}, timeout=900)
        assert backend_status(lab, lb, node) == "MAINT"
        assert lab.ssh(node, "systemctl is-active ollama", check=False).stdout.strip() != "active"
        assert load.wait_for_answers(5, timeout=30)
        lab.run_playbook("playbooks/scale_out.yml", {"scale_out_nodes": [node]}, timeout=900)
        wait_for(lambda: (backend_status(lab, lb, node) or "").startswith("UP"), timeout=30, interval=0.1)
        assert load.wait_for_answers(5, timeout=30)
    assert load.failures == []
    assert lab.ssh(node, "systemctl is-active ollama").stdout.strip() == "active"


def test_scale_in_refuses_to_empty_the_rotation(lab, balanced):
    done = lab.run_playbook("playbooks/scale_in.yml", {"scale_in_nodes": lab.group("ai_nodes")}, check=False)
    assert done.returncode != 0
    assert "must stay in rotation" in done.stdout


@pytest.fixture()
def spare_node_inventory(deployed, tmp_path):
    """An inventory that adds the lab's spare host to ai_nodes; afterwards the load balancers and Prometheus are
    deployed again from the lab's own inventory, which no longer lists it."""
    lab = deployed
    spares = lab.group("spare_ai_nodes")
    if not spares:
        pytest.skip("this topology has no spare AI host (the cluster has ai4)")
    layered = tmp_path / "with-spare.yml"
    layered.write_text(yaml.safe_dump({"all": {"children": {"ai_nodes": {"hosts": {spares[0]: None}}}}}))
    yield spares[0], ["-i", str(layered)]
    lab.run_playbook("playbooks/loadbalancers.yml", timeout=900)
    lab.run_playbook("playbooks/monitoring.yml", args=["--limit", ",".join(lab.group("monitoring"))], timeout=900)


def test_a_fourth_node_scales_out_serves_and_scales_in_under_load(lab, spare_node_inventory):
    node, layered = spare_node_inventory
    balancers = lab.group("loadbalancers")
    url = "http://%s:11434" % (lab.topology.vip or lab.hosts[balancers[0]].address)
    with Traffic(url, "mixed", workers=3) as load:
        assert load.wait_for_answers(5, timeout=30)
        lab.run_playbook("playbooks/scale_out.yml", {"scale_out_nodes": [node]}, args=layered, timeout=1200)
        for lb in balancers:
            wait_for(lambda lb=lb: (backend_status(lab, lb, node) or "").startswith("UP"), timeout=30, interval=0.1)
        # Whichever load balancer holds the virtual IP serves: count the node's sessions on all of them.
        served_before = sum(sessions_served(lab, lb, node) for lb in balancers)
        wait_for(lambda: sum(sessions_served(lab, lb, node) for lb in balancers) > served_before + 5, timeout=60,
                 interval=0.5)
        lab.run_playbook("playbooks/scale_in.yml", {"scale_in_nodes": [node]}, args=layered, timeout=900)
        assert [backend_status(lab, lb, node) for lb in balancers] == ["MAINT"] * len(balancers)
        assert load.wait_for_answers(5, timeout=30)
    assert load.failures == []
    assert lab.ssh(node, "systemctl is-active ollama", check=False).stdout.strip() != "active"
    print("\n%d requests through %s while %s joined and left, none failed" % (load.sent, url, node))
