"""scale_in.yml and scale_out.yml under continuous load through the load balancer: no request may fail."""

from __future__ import annotations

import time

import pytest
from lab.traffic import Traffic

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama")]


def wait_for(condition, timeout, interval=0.1):
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail("condition not met within %ss" % timeout)
        time.sleep(interval)


def backend_status(lab, lb, node):
    table = lab.ssh(lb, "echo 'show stat' | socat -t 5 stdio unix-connect:/run/haproxy/admin.sock").stdout
    for line in table.splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == "ai_ollama" and fields[1] == node:
            return fields[17]
    return None


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
        wait_for(lambda: (backend_status(lab, lb, node) or "").startswith("UP"), timeout=30)
        assert load.wait_for_answers(5, timeout=30)
    assert load.failures == []
    assert lab.ssh(node, "systemctl is-active ollama").stdout.strip() == "active"


def test_scale_in_refuses_to_empty_the_rotation(lab, balanced):
    done = lab.run_playbook("playbooks/scale_in.yml", {"scale_in_nodes": lab.group("ai_nodes")}, check=False)
    assert done.returncode != 0
    assert "must stay in rotation" in done.stdout
