"""Failover of the virtual IP between the two load balancers: how long, and how many requests fail.

Needs a deployed cluster lab (`make lab-up TOPOLOGY=cluster`, then `ansible-playbook -i inventories/lab
playbooks/site.yml`). Sends requests through the virtual IP at a steady rate, stops HAProxy (or the whole
host) on the load balancer that holds the address, and measures the time until the other one holds it and
the requests that failed. Appends the figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from lab.core import Lab
from lab.traffic import Traffic
from report import append_section


def holder(lab):
    for lb in lab.group("loadbalancers"):
        if (" %s/" % lab.vip) in lab.exec(lb, "ip", "-4", "-o", "addr", "show", check=False).stdout:
            return lb
    return None


def fail_over(lab, fault, rate, settle):
    """One failover: returns (seconds until the other balancer holds the address, failed, sent)."""
    first = holder(lab)
    other = next(lb for lb in lab.group("loadbalancers") if lb != first)
    with Traffic("http://%s:11434" % lab.vip, "tags", rate=rate, fresh_connections=True, timeout=2) as load:
        time.sleep(settle)  # steady traffic before the fault, so a failure window is visible
        started = time.monotonic()
        if fault == "haproxy":
            lab.ssh(first, "systemctl stop haproxy")
        else:
            lab.stop(first)
        while holder(lab) != other:
            if time.monotonic() - started > 30:
                raise SystemExit("the virtual IP did not move within 30 s")
            time.sleep(0.02)
        moved = time.monotonic() - started
        time.sleep(settle)
    if fault == "haproxy":
        lab.ssh(first, "systemctl start haproxy")
    else:
        lab.start(first)
        lab.wait_ready([first])
    return moved, len(load.failures), load.sent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of traffic before and after")
    args = parser.parse_args(argv)
    lab = Lab.current()
    if lab is None or not lab.vip:
        print("needs a running cluster lab: make lab-up TOPOLOGY=cluster, then deploy site.yml", file=sys.stderr)
        return 2
    rows = ["| fault on the holder | time until the other LB holds the VIP | failed requests / sent |",
            "| --- | ---: | ---: |"]
    for fault, label in (("haproxy", "`systemctl stop haproxy`"), ("host", "whole host stopped")):
        moved, failed, sent = fail_over(lab, fault, args.rate, args.settle)
        rows.append("| %s | %.2f s | %d / %d |" % (label, moved, failed, sent))
    rows += ["", "Steady load of %.0f requests per second through the virtual IP, each on a new connection; "
             "keepalived checks HAProxy every second and fails after 2 misses." % args.rate]
    append_section("Virtual IP failover", "make bench-failover (bench/lb_failover.py --rate %g)" % args.rate, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
