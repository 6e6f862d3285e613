"""`make demo`: a lab AI Cluster on this machine, deployed by the collection, exercised under load, with a summary.

The demo grows with the collection: each step says plainly what it does and what came of it, and the summary
lists what is not built yet, so a newcomer never mistakes a planned capability for a working one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from lab import metering, monitoring
from lab.core import Lab
from lab.inventory import ai_endpoint_url
from lab.proc import LabError, LabUnavailable, wait_for
from lab.topology import ENGINES, available_topologies, load_topology
from lab.traffic import Traffic

from ansible_collections.namtech.internal_ai.plugins.module_utils import tco
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import ApiError, HttpClient
from ansible_collections.namtech.internal_ai.plugins.module_utils.ollama import OllamaClient
from ansible_collections.namtech.internal_ai.plugins.module_utils.tco_report_render import summary_lines

REPO = Path(__file__).resolve().parent.parent
NOT_BUILT_YET = [
    "model rollouts on vLLM nodes (issue 7: the demo's rollouts run on Ollama nodes)",
]
# What a site keeps in its inventory and vault, here for the demo's run only: where the first AI node's backups go,
# and their key.
DEMO_BACKUPS = "/var/backups/namtech-demo"
DEMO_BACKUP_KEY = "demo-backup-key-3f9a1c7e52d84b06"
# The TCO step: requests the meters must have counted, and the seconds its window reaches back before the load.
METERED_ENOUGH = 20
WINDOW_MARGIN = 30


class Steps:
    """Numbered, timed steps with a one-line result each, kept for the summary."""

    def __init__(self):
        self.results = []

    def run(self, title, action):
        print("\n== step %d: %s" % (len(self.results) + 1, title), flush=True)
        started = time.monotonic()
        outcome = action()
        seconds = time.monotonic() - started
        print("   -> %s (%.0fs)" % (outcome, seconds), flush=True)
        self.results.append((title, outcome, seconds))
        return outcome


def bring_up(lab):
    report = lab.up()
    changes = "%d changes" % len(report.changes) if report.changed else "already up, nothing changed"
    return "%d hosts up (%s)" % (len(lab.hosts), changes)


def ping_every_host(lab):
    answered = lab.ansible("all", "ansible.builtin.ping").stdout.count("SUCCESS")
    return "%d of %d hosts answer Ansible over SSH" % (answered, len(lab.hosts))


def deploy_site(lab):
    lab.run_playbook(REPO / "playbooks" / "site.yml", timeout=1800)
    parts = ("engines, models and aliases" + (", load balancers" if lab.group("loadbalancers") else "")
             + (", the virtual IP" if lab.vip else "") + " and monitoring")
    return "site.yml applied: " + parts


def what_every_node_serves(lab):
    lines = []
    for node in lab.group("ai_nodes"):
        with HttpClient("http://%s:11434" % lab.hosts[node].address, read_timeout=10) as http:
            engine = OllamaClient(http)
            version, models = engine.version(), engine.tags()
        described = ", ".join("%s (%s)" % (model["name"], model["digest"][:12]) for model in models)
        lines.append("      %s: Ollama %s with %s" % (node, version, described))
    print("\n".join(lines))
    return "engine version and model digests read from %s (ollama_info reads the same)" % counted(
        len(lines), "AI node")


def drain_and_return_a_node(lab, endpoint):
    node = lab.group("ai_nodes")[-1]
    with Traffic(endpoint, "mixed", workers=2) as load:
        load.wait_for_answers(5, timeout=60)
        lab.run_playbook(REPO / "playbooks" / "scale_in.yml", {"scale_in_nodes": [node]}, timeout=900)
        load.wait_for_answers(5, timeout=60)
        lab.run_playbook(REPO / "playbooks" / "scale_out.yml", {"scale_out_nodes": [node]}, timeout=900)
        load.wait_for_answers(5, timeout=60)
    return "%s drained, stopped and brought back under streamed load: %d answers, %d failed" % (
        node, load.ok, len(load.failures))


def run_rollout(lab, reports, playbook, extra_vars):
    """Run a rollout playbook; return (it succeeded, the outcome line of its newest report)."""
    done = lab.run_playbook(REPO / "playbooks" / playbook, dict(extra_vars, rollout_reports_dir=str(reports)),
                            check=False, timeout=1800)
    newest = max(reports.glob("rollout-*.md"), key=lambda path: path.stat().st_mtime, default=None)
    print("\n".join("      " + line for line in (newest.read_text().splitlines() if newest else [])))
    return done.returncode == 0, newest


def upgrade_to_the_faster_version(lab, reports):
    passed, report = run_rollout(lab, reports, "upgrade_model.yml", {"rollout_model": "lab-chat:v2"})
    if not passed:
        raise LabError("upgrade_model.yml failed; see %s" % report)
    if not lab.group("loadbalancers"):
        return "lab-chat:v1 -> lab-chat:v2 on the only node, evaluated against v1 first, then through the health gate"
    return "lab-chat:v1 -> lab-chat:v2 on every node, evaluated on a canary first, node by node behind the LB"


def try_the_bad_version(lab, reports):
    passed = run_rollout(lab, reports, "upgrade_model.yml", {"rollout_model": "lab-chat:bad"})[0]
    if passed:
        raise LabError("upgrade_model.yml accepted lab-chat:bad")
    return "lab-chat:bad rejected by the evaluation (wrong answers, slower); no node changed"


def skip_the_evaluation_and_let_the_gate_catch_it(lab, reports):
    passed = run_rollout(lab, reports, "upgrade_model.yml",
                         {"rollout_model": "lab-chat:bad", "rollout_skip_eval": True})[0]
    if passed:
        raise LabError("the health gate let lab-chat:bad through")
    return "evaluation skipped on purpose: the first node's health gate failed, it rolled back, the run stopped"


def roll_back(lab, reports):
    passed, report = run_rollout(lab, reports, "rollback_model.yml", {})
    if not passed:
        raise LabError("rollback_model.yml failed; see %s" % report)
    return "every node back on lab-chat:v1 from its own disk (no download)"


def back_up_and_verify(lab):
    """Back up the first AI node's engine settings, release record and models, then restore it to scratch and
    compare (verify_backup.yml), as a site's scheduled backup and monthly drill do."""
    node = lab.group("ai_nodes")[0]
    where = {"path": DEMO_BACKUPS}
    lab.run_playbook(REPO / "playbooks" / "backup.yml", {
        "backup_hosts": node, "backup_destination": where, "backup_encryption_key": DEMO_BACKUP_KEY,
        "backup_engine_url": "http://{{ ansible_host }}:11434",
        "backup_sources": [
            {"type": "config", "name": "engine-config", "ignore_missing": True,
             "paths": ["/etc/systemd/system/ollama.service", "/etc/systemd/system/ollama.service.d/**",
                       "/var/lib/namtech_ai/releases.json"]},
            {"type": "models", "name": "models", "models_dir": "{{ ollama_models_dir }}",
             "models": ["lab-chat:v1", "lab-chat:v2"]}]}, timeout=900)
    verified = lab.run_playbook(REPO / "playbooks" / "verify_backup.yml", {
        "verify_hosts": node, "verify_name": node, "verify_destination": where,
        "verify_encryption_key": DEMO_BACKUP_KEY}, timeout=900).stdout
    drill = re.search(r'"msg": "(Backup \S+ of %s .*?)"' % re.escape(node), verified)
    if drill is None:
        raise LabError("verify_backup.yml did not report its drill:\n" + verified[-2000:])
    print("      " + drill.group(1))
    return "%s backed up (encrypted, to %s on the node) and restored to scratch: every part equal" % (
        node, DEMO_BACKUPS)


def metered_requests(lab, seconds):
    """The requests Prometheus saw the meters relay over the last ``seconds``, counted by the TCO report's own query
    (generations and embeddings; the load balancers' health checks, which the meters relay too, do not count)."""
    query = "sum(%s)" % tco.with_window(tco.DEFAULT_REQUESTS_QUERY, "%ds" % seconds)
    answer = monitoring.get(monitoring.prometheus_url(lab) + "/api/v1/query", params={"query": query},
                            timeout=10).json()
    series = answer["data"]["result"]
    return float(series[0]["value"][1]) if series else 0.0


def cost_of_ownership(lab, reports, endpoint):
    overlay = metering.write_overlay(reports / "tco-inventory.yml")
    metering.switch_on(lab, overlay)
    started = time.time()
    with Traffic(endpoint, "mixed", workers=2) as load:
        load.wait_for_answers(40, timeout=300)
        # A meter's first scrapes come after its first requests: wait until Prometheus has counted them.
        try:
            wait_for(lambda: metered_requests(lab, time.time() - started + WINDOW_MARGIN) >= METERED_ENOUGH,
                     timeout=240, interval=2)
        except AssertionError:
            raise LabError("Prometheus counted fewer than %d metered requests within 240 s of load: check the "
                           "llm_meter targets on %s" % (METERED_ENOUGH, monitoring.prometheus_url(lab))) from None
        # The load goes on while the report runs: its window ends when the playbook queries Prometheus, later.
        lab.run_playbook(REPO / "playbooks" / "tco_report.yml", {
            "tco_window": "%ds" % (time.time() - started + WINDOW_MARGIN), "tco_report_dir": str(reports),
            "tco_cloud_prices_file": str(REPO / "examples" / "tco" / "cloud_prices.yml")},
            args=["-i", str(overlay)], timeout=600)
    report = json.loads(max(reports.glob("tco-*.json"), key=lambda path: path.stat().st_mtime).read_text())
    print("\n".join("      " + line for line in summary_lines(report)))
    current = report["tiers"][0]
    per_million = current["cost_per_million_tokens"]
    return "llm_meter counted %d requests' tokens; the lab's %s cost %.0f %s a month, %s per million tokens" % (
        load.ok, counted(len(current["hosts"]), "host"), current["monthly"]["total"], report["currency"],
        "n/a" if per_million is None else "%.2f" % per_million)


def counted(number, noun):
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")


def vip_holder(lab):
    for balancer in lab.group("loadbalancers"):
        if (" %s/" % lab.vip) in lab.exec(balancer, "ip", "-4", "-o", "addr", "show", check=False).stdout:
            return balancer
    return None


def fail_over_the_load_balancer(lab, endpoint):
    first = vip_holder(lab)
    with Traffic(endpoint, "tags", rate=20, fresh_connections=True, timeout=2) as load:
        load.wait_for_answers(20, timeout=30)
        stopped = time.monotonic()
        lab.ssh(first, "systemctl stop haproxy")
        while vip_holder(lab) in (first, None) and time.monotonic() - stopped < 30:
            time.sleep(0.05)
        moved = time.monotonic() - stopped
        load.wait_for_answers(20, timeout=30)
    lab.ssh(first, "systemctl start haproxy")
    return "HAProxy stopped on %s: the virtual IP moved to %s in %.1fs; %d of %d requests failed meanwhile" % (
        first, vip_holder(lab), moved, len(load.failures), load.sent)


def print_summary(lab, steps, started, endpoint, *, load, reports):
    print("\n" + "=" * 78)
    elapsed = time.monotonic() - started
    print("SUMMARY (%s lab, %s engine, %.0fs)" % (lab.topology.name, lab.topology.engine, elapsed))
    for title, outcome, _seconds in steps.results:
        print("  - %s: %s" % (title, outcome))
    if load is not None:
        print("\nsteady load through %s from deployment to the end (failover excepted): %d requests, %d failed"
              % (endpoint, load.sent, len(load.failures)))
    print("reports:                %s" % reports.relative_to(REPO))
    print("endpoint clients use:   %s" % endpoint)
    for balancer in lab.group("loadbalancers"):
        print("HAProxy stats page:     http://%s:8404/stats (user stats, haproxy_stats_password of the inventory)"
              % lab.hosts[balancer].address)
    for monitor in lab.group("monitoring"):
        print("Prometheus:             https://%s:9090   Alertmanager: https://%s:9093 (user %s, password %s; "
              "CA %s)" % (*(lab.hosts[monitor].address,) * 2, *monitoring.LOGIN, monitoring.CA_PATH.relative_to(REPO)))
    print("inventory:              %s" % lab.inventory_path.relative_to(REPO))
    print("\nnot in the demo yet (their issues are open):")
    for item in NOT_BUILT_YET:
        print("  - " + item)
    print("\nthe lab stays up for you to explore; `make lab-down` removes it.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="cluster", choices=available_topologies())
    parser.add_argument("--engine", default="ollama", choices=ENGINES)
    args = parser.parse_args(argv)
    if args.engine != "ollama":
        print("the demo drives Ollama nodes; ENGINE=vllm is for `make lab-up` and the vLLM tests", file=sys.stderr)
        return 2
    started = time.monotonic()
    lab = Lab(load_topology(args.topology, args.engine))
    steps = Steps()
    reports = REPO / "reports" / time.strftime("demo-%Y%m%dT%H%M%SZ", time.gmtime())
    reports.mkdir(parents=True)
    load = None
    try:
        steps.run("bring up the lab (%s)" % args.topology, lambda: bring_up(lab))
        steps.run("reach every host with Ansible", lambda: ping_every_host(lab))
        steps.run("deploy site.yml", lambda: deploy_site(lab))
        endpoint = ai_endpoint_url(lab.topology)
        steps.run("ask every AI node what it serves", lambda: what_every_node_serves(lab))
        with Traffic(endpoint, "mixed", workers=2) as load:
            print("\n   a steady load (streamed and non-streamed generations) now runs through %s" % endpoint)
            if lab.group("loadbalancers") and len(lab.group("ai_nodes")) > 1:
                steps.run("take a node out and back under load", lambda: drain_and_return_a_node(lab, endpoint))
            steps.run("upgrade the model, evaluated and gated", lambda: upgrade_to_the_faster_version(lab, reports))
            steps.run("try a bad model version", lambda: try_the_bad_version(lab, reports))
            steps.run("skip the evaluation: the health gate rolls back",
                      lambda: skip_the_evaluation_and_let_the_gate_catch_it(lab, reports))
            steps.run("roll back to the previous version", lambda: roll_back(lab, reports))
            steps.run("back up a node and verify the backup", lambda: back_up_and_verify(lab))
        if lab.vip:
            steps.run("fail over the load balancer", lambda: fail_over_the_load_balancer(lab, endpoint))
        steps.run("measure usage and report the total cost of ownership",
                  lambda: cost_of_ownership(lab, reports, endpoint))
    except LabUnavailable as exc:
        print("\nthe lab cannot run on this machine: %s" % exc, file=sys.stderr)
        return 2
    except (LabError, ApiError) as exc:
        print("\ndemo failed: %s" % exc, file=sys.stderr)
        return 1
    print_summary(lab, steps, started, endpoint, load=load, reports=reports)
    return 0 if load is None or not load.failures else 1


if __name__ == "__main__":
    sys.exit(main())
