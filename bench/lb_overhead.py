"""Latency through the load balancer against straight to an AI node: the same requests, interleaved, one run.

Needs a lab with load balancers whose AI nodes serve (`make lab-up TOPOLOGY=pro` or `cluster`, then
`ansible-playbook -i inventories/lab playbooks/site.yml`). Prints p50 and p99 of both and their ratios, and
appends them to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx
from lab.core import Lab
from lab.inventory import LAB_AUTH_HEADERS
from report import append_section, percentile

REQUEST = {"model": "assistant", "prompt": "ping", "stream": False, "options": {"num_predict": 1}}


def timed_post(client, url):
    started = time.perf_counter()
    response = client.post(url + "/api/generate", json=REQUEST)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def measure(direct_url, balanced_url, requests):
    """Alternate the two paths so both see the same machine noise."""
    direct, balanced = [], []
    with httpx.Client(timeout=30, headers=LAB_AUTH_HEADERS) as client:
        for url in (direct_url, balanced_url):
            timed_post(client, url)  # warm the model and the connections
        for _round in range(requests):
            direct.append(timed_post(client, direct_url))
            balanced.append(timed_post(client, balanced_url))
    return direct, balanced


def only_node_in_rotation(lab, balancer, node):
    """Put every other AI node in maintenance on the balancer, so both paths end at the same node."""
    others = [name for name in lab.group("ai_nodes") if name != node]

    def set_state(state):
        for other in others:
            lab.ssh(balancer, "echo 'set server ai_ollama/%s state %s' | socat -t 5 stdio "
                              "unix-connect:/run/haproxy/admin.sock" % (other, state))

    return set_state


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    lab = Lab.current()
    if lab is None or not lab.group("loadbalancers"):
        print("needs a running lab with load balancers: make lab-up TOPOLOGY=pro (or cluster)", file=sys.stderr)
        return 2
    node_name, balancer_name = lab.group("ai_nodes")[0], lab.group("loadbalancers")[0]
    node, balancer = lab.hosts[node_name].address, lab.hosts[balancer_name].address
    set_others = only_node_in_rotation(lab, balancer_name, node_name)
    set_others("maint")
    try:
        direct, balanced = measure("http://%s:11434" % node, "http://%s:11434" % balancer, args.requests)
    finally:
        set_others("ready")
    rows = ["| path | p50 ms | p99 ms |", "| --- | ---: | ---: |"]
    for name, values in (("direct to %s" % lab.group("ai_nodes")[0], direct),
                         ("through HAProxy on %s" % lab.group("loadbalancers")[0], balanced)):
        rows.append("| %s | %.2f | %.2f |" % (name, percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000))
    ratios = [percentile(balanced, share) / percentile(direct, share) for share in (0.5, 0.99)]
    rows += ["", "Ratio through the LB / direct: p50 %.2f, p99 %.2f (%d requests each, one token per answer, the other "
             "AI nodes in maintenance so both paths end at the same node, %s lab)."
             % (*ratios, args.requests, lab.topology.name)]
    append_section("Load balancer overhead", "make bench-lb (bench/lb_overhead.py --requests %d)" % args.requests,
                   rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
