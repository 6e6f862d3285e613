"""keepalived on the lab cluster: the virtual IP serves, and moves to the other load balancer when HAProxy stops."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

pytestmark = [pytest.mark.topology("cluster"), pytest.mark.engine("ollama")]


def holder(lab, vip):
    """The load balancer that has the virtual IP now, or None."""
    for lb in lab.group("loadbalancers"):
        if (" %s/" % vip) in lab.ssh(lb, "ip -4 -o addr show").stdout:
            return lb
    return None


def wait_for(condition, timeout, interval=0.05):
    started = time.monotonic()
    while not (found := condition()):
        if time.monotonic() - started > timeout:
            pytest.fail("condition not met within %ss" % timeout)
        time.sleep(interval)
    return found


@pytest.fixture(scope="module")
def shared_vip(deployed):
    lab = deployed
    return wait_for(lambda: holder(lab, lab.vip), timeout=15)


class Requests:
    """GET /api/tags through the virtual IP, back to back, recording when each one failed."""

    def __init__(self, url):
        self.url = url
        self.ok = 0
        self.failed_at = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                with httpx.Client(timeout=2) as client:  # a new connection each time, as most clients do
                    status = client.get(self.url + "/api/tags").status_code
                self.ok += status == 200
                if status != 200:
                    self.failed_at.append(time.monotonic())
            except httpx.HTTPError:
                self.failed_at.append(time.monotonic())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=10)


def test_the_virtual_ip_serves_the_ai_endpoint(lab, shared_vip):
    answer = httpx.get("http://%s:11434/api/version" % lab.vip, timeout=5)
    assert answer.status_code == 200 and answer.json()["version"]


def test_stopping_haproxy_on_the_holder_moves_the_virtual_ip(lab, shared_vip):
    first = shared_vip
    other = next(lb for lb in lab.group("loadbalancers") if lb != first)
    with Requests("http://%s:11434" % lab.vip) as load:
        wait_for(lambda: load.ok > 10, timeout=10)
        stopped = time.monotonic()
        lab.ssh(first, "systemctl stop haproxy")
        try:
            wait_for(lambda: holder(lab, lab.vip) == other, timeout=15)
            moved = time.monotonic() - stopped
            served = load.ok
            wait_for(lambda: load.ok > served + 10, timeout=10)
        finally:
            lab.ssh(first, "systemctl start haproxy")
    print("\nvirtual IP moved %.2fs after haproxy stopped on %s; %d requests failed, %d succeeded"
          % (moved, first, len(load.failed_at), load.ok))
    assert moved < 8, "check interval times fall plus a priority-0 advert should move it in about 3 s"
    # Requests fail only while no host answers on the address: between the stop and the move.
    assert all(stopped <= failed <= stopped + moved + 2 for failed in load.failed_at)
    assert holder(lab, lab.vip) == other, "with nopreempt the recovered host must not take the address back"
