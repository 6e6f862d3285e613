"""The haproxy role on the lab: requests spread over the AI nodes, a dead engine leaves rotation fast and
clients see no error, and a second run changes nothing."""

from __future__ import annotations

import time

import httpx
import pytest
from lab.inventory import LAB_AUTH_HEADERS
from lab.proc import changed_per_host, wait_for
from lab.traffic import Traffic

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama")]

REPO_PLAYBOOKS = "playbooks"
ENGINE_PORT = 11434


def runtime_api(lab, lb, command):
    return lab.ssh(lb, "echo '%s' | socat -t 5 stdio unix-connect:/run/haproxy/admin.sock" % command).stdout


def server_rows(lab, lb):
    """``{server: {"status", "stot"}}`` of the AI backend from ``show stat``."""
    lines = runtime_api(lab, lb, "show stat").lstrip("# ").splitlines()
    header = lines[0].split(",")
    rows = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "ai_ollama" and row.get("svname") not in ("FRONTEND", "BACKEND"):
            rows[row["svname"]] = {"status": row["status"], "stot": int(row["stot"] or 0)}
    return rows


@pytest.fixture(scope="module")
def balanced(deployed):
    """The AI nodes serve Ollama and every load balancer fronts them."""
    lab = deployed
    lb = lab.group("loadbalancers")[0]
    wait_for(lambda: all(row["status"].startswith("UP") for row in server_rows(lab, lb).values()), timeout=30,
             interval=0.05)
    return {"lb": lb, "url": "http://%s:%d" % (lab.hosts[lb].address, ENGINE_PORT), }


def test_requests_are_spread_over_every_node(lab, balanced):
    before = server_rows(lab, balanced["lb"])
    with httpx.Client(timeout=10, headers=LAB_AUTH_HEADERS) as client:
        for _request in range(30):
            assert client.get(balanced["url"] + "/api/tags").status_code == 200
    after = server_rows(lab, balanced["lb"])
    served = {name: after[name]["stot"] - before[name]["stot"] for name in after}
    assert set(served) == set(lab.group("ai_nodes"))
    assert all(count > 0 for count in served.values()), served


def test_a_stopped_engine_leaves_rotation_within_3s_and_clients_see_no_error(lab, balanced):
    node = lab.group("ai_nodes")[0]
    with Traffic(balanced["url"], "tags") as load:
        assert load.wait_for_answers(5, timeout=10)
        lab.ssh(node, "systemctl stop ollama")
        stopped = time.monotonic()
        wait_for(lambda: server_rows(lab, balanced["lb"])[node]["status"].startswith("DOWN"), timeout=10, interval=0.05)
        left_rotation = time.monotonic() - stopped
        assert load.wait_for_answers(5, timeout=10)
        lab.ssh(node, "systemctl start ollama")
        wait_for(lambda: server_rows(lab, balanced["lb"])[node]["status"].startswith("UP"), timeout=30, interval=0.05)
    assert left_rotation < 3, "the stopped node stayed in rotation %.1fs" % left_rotation
    assert load.failures == []
    assert load.ok > 10


def test_a_second_run_changes_nothing(lab, balanced):
    again = lab.run_playbook(REPO_PLAYBOOKS + "/loadbalancers.yml", timeout=600)
    assert sum(changed_per_host(again.stdout).values()) == 0, again.stdout[-3000:]


def test_the_metrics_endpoint_reports_every_server(lab, balanced):
    address = lab.hosts[balanced["lb"]].address
    metrics = httpx.get("http://%s:8404/metrics" % address, timeout=10)
    assert metrics.status_code == 200
    assert 'haproxy_server_status{proxy="ai_ollama",server="%s"' % lab.group("ai_nodes")[0] in metrics.text
