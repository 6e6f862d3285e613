"""scale_in.yml and scale_out.yml under continuous load through the load balancer: no request may fail."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama")]

GENERATE = {"model": "assistant", "prompt": "What is the capital of France?", "options": {"num_predict": 8}}


class GenerationLoad:
    """Back-to-back generations through the load balancer, streamed and not, each checked to the end."""

    def __init__(self, url, streams=2):
        self.url = url
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(index % 2 == 0,), daemon=True)
                         for index in range(streams)]

    def _one(self, client, stream):
        if not stream:
            answer = client.post(self.url + "/api/generate", json=dict(GENERATE, stream=False))
            return answer.status_code == 200 and answer.json().get("done") is True
        with client.stream("POST", self.url + "/api/generate", json=dict(GENERATE, stream=True)) as answer:
            events = [json.loads(line) for line in answer.iter_lines() if line.strip()]
        return answer.status_code == 200 and bool(events) and events[-1].get("done") is True

    def _run(self, stream):
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    if self._one(client, stream):
                        self.ok += 1
                    else:
                        self.failures.append("incomplete answer")
                except (httpx.HTTPError, ValueError) as exc:
                    self.failures.append(repr(exc))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


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
    with GenerationLoad(url) as load:
        wait_for(lambda: load.ok >= 5, timeout=30)
        lab.run_playbook("playbooks/scale_in.yml", {"scale_in_nodes": [node]}, timeout=900)
        assert backend_status(lab, lb, node) == "MAINT"
        assert lab.ssh(node, "systemctl is-active ollama", check=False).stdout.strip() != "active"
        served = load.ok
        wait_for(lambda: load.ok >= served + 5, timeout=30)
        lab.run_playbook("playbooks/scale_out.yml", {"scale_out_nodes": [node]}, timeout=900)
        wait_for(lambda: (backend_status(lab, lb, node) or "").startswith("UP"), timeout=30)
        served = load.ok
        wait_for(lambda: load.ok >= served + 5, timeout=30)
    assert load.failures == []
    assert lab.ssh(node, "systemctl is-active ollama").stdout.strip() == "active"


def test_scale_in_refuses_to_empty_the_rotation(lab, balanced):
    done = lab.run_playbook("playbooks/scale_in.yml", {"scale_in_nodes": lab.group("ai_nodes")}, check=False)
    assert done.returncode != 0
    assert "must stay in rotation" in done.stdout
