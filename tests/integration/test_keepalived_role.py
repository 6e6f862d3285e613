"""keepalived on the lab cluster: the virtual IP serves, and moves to the other load balancer when HAProxy stops."""

from __future__ import annotations

import time

import httpx
import pytest
from lab.inventory import LAB_AUTH_HEADERS
from lab.proc import wait_for
from lab.traffic import Traffic

pytestmark = [pytest.mark.topology("cluster"), pytest.mark.engine("ollama")]


def holder(lab, vip):
    """The load balancer that has the virtual IP now, or None."""
    for lb in lab.group("loadbalancers"):
        if (" %s/" % vip) in lab.ssh(lb, "ip -4 -o addr show").stdout:
            return lb
    return None


@pytest.fixture(scope="module")
def shared_vip(deployed):
    lab = deployed
    return wait_for(lambda: holder(lab, lab.vip), timeout=15, interval=0.05)


def test_the_virtual_ip_serves_the_ai_endpoint(lab, shared_vip):
    answer = httpx.get("http://%s:11434/api/version" % lab.vip, headers=LAB_AUTH_HEADERS, timeout=5)
    assert answer.status_code == 200 and answer.json()["version"]


def test_stopping_haproxy_on_the_holder_moves_the_virtual_ip(lab, shared_vip):
    first = shared_vip
    other = next(lb for lb in lab.group("loadbalancers") if lb != first)
    with Traffic("http://%s:11434" % lab.vip, "tags", fresh_connections=True, timeout=2) as load:
        assert load.wait_for_answers(10, timeout=10)
        stopped = time.monotonic()
        lab.ssh(first, "systemctl stop haproxy")
        try:
            wait_for(lambda: holder(lab, lab.vip) == other, timeout=15, interval=0.05)
            moved = time.monotonic() - stopped
            assert load.wait_for_answers(10, timeout=10)
        finally:
            lab.ssh(first, "systemctl start haproxy")
    print("\nvirtual IP moved %.2fs after haproxy stopped on %s; %d requests failed, %d succeeded"
          % (moved, first, len(load.failures), load.ok))
    assert moved < 8, "check interval times fall plus a priority-0 advert should move it in about 3 s"
    # Requests fail only while no host answers on the address: between the stop and the move.
    assert all(stopped <= failed_at <= stopped + moved + 2 for failed_at, _problem in load.failures)
    assert holder(lab, lab.vip) == other, "with nopreempt the recovered host must not take the address back"
