"""Model rollouts under load: failed requests, latency during the rollout, total time, recovery time.

Needs a deployed cluster lab (`make lab-up TOPOLOGY=cluster`, then site.yml). The artifact host is slowed
to --bandwidth bytes per second per download for the run (a node's own link to the model mirror), so that
pulls dominate as they do with multi-GB models; it is restored afterwards. Figures, in one run:

(a) failed requests of every request sent during the whole run (streamed and non-streamed generations
    through the virtual IP), (b) p95 latency during our rollout vs steady state, (c) total time of
    upgrade_model.yml vs a naive playbook that pulls inside the serial loop, (d) time from a failed health
    gate to the node serving the old version in rotation again (from the run's report).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from lab.artifact_host import PORT, REMOTE_ROOT, REMOTE_SERVER, UNIT_NAME
from lab.core import Lab
from lab.traffic import Traffic
from report import append_section, percentile

NAIVE_PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "naive_rollout.yml"
DROP_IN = f"/etc/systemd/system/{UNIT_NAME}.d/bench-bandwidth.conf"


def limit_bandwidth(lab, host, rate):
    command = f"/usr/bin/python3 {REMOTE_SERVER} --root {REMOTE_ROOT} --bind 0.0.0.0 --port {PORT}"
    if rate:
        command += f" --rate-limit {rate}"
    text = f"[Service]\nExecStart=\nExecStart={command}\n"
    lab.ssh(host, f"mkdir -p $(dirname {DROP_IN}) && printf '%s' '{text}' > {DROP_IN} && systemctl daemon-reload "
                  f"&& systemctl restart {UNIT_NAME}")


def restore_bandwidth(lab, host):
    lab.ssh(host, f"rm -f {DROP_IN} && systemctl daemon-reload && systemctl restart {UNIT_NAME}")


def reset(lab, reports):
    """Every node back on lab-chat:v1, with lab-chat:v2 and lab-chat:bad gone from its disk.

    The rollback puts the release record back; the direct repoint undoes the naive playbook, which changes the
    alias without recording it.
    """
    lab.run_playbook("playbooks/rollback_model.yml", {"rollout_to": "lab-chat:v1", "rollout_reports_dir": reports},
                     check=False, timeout=900)
    lab.ansible("ai_nodes", "namtech.internal_ai.ollama_model",
                "url=http://{{ ansible_host }}:11434 name=assistant copy_from=lab-chat:v1")
    for model in ("lab-chat:v2", "lab-chat:bad"):
        lab.ansible("ai_nodes", "namtech.internal_ai.ollama_model",
                    f"url=http://{{{{ ansible_host }}}}:11434 name={model} state=absent")


def timed_run(lab, load, playbook, extra_vars, check=True):
    started = time.monotonic()
    done = lab.run_playbook(playbook, extra_vars, check=check, timeout=1800)
    ended = time.monotonic()
    latencies = [seconds for at, seconds in load.latencies if started <= at <= ended]
    return done, ended - started, latencies


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandwidth", type=int, default=2 * 1024 * 1024,
                        help="bytes per second per download from the artifact host (default 2 MiB/s)")
    parser.add_argument("--workers", type=int, default=3, help="client threads (default 3)")
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady-state load (default 30)")
    args = parser.parse_args(argv)
    lab = Lab.current()
    if lab is None or not lab.vip:
        print("needs a running, deployed cluster lab: make lab-up TOPOLOGY=cluster, then site.yml", file=sys.stderr)
        return 2
    artifacts = lab.group("artifacts")[0]
    reports = tempfile.mkdtemp(prefix="bench-rollout-")
    # No backup phase: the naive playbook takes none, and only the first of our runs would (later ones find it fresh).
    rollout_vars = {"rollout_reports_dir": reports, "rollout_pull_throttle": len(lab.group("ai_nodes")),
                    "rollout_skip_backup": True}
    reset(lab, reports)
    limit_bandwidth(lab, artifacts, args.bandwidth)
    try:
        with Traffic(f"http://{lab.vip}:11434", "mixed", workers=args.workers) as load:
            load.wait_for_answers(5, timeout=30)
            steady_from = time.monotonic()
            time.sleep(args.steady)
            steady = [seconds for at, seconds in load.latencies if at >= steady_from]
            ours, during = timed_run(lab, load, "playbooks/upgrade_model.yml",
                                     dict(rollout_vars, rollout_model="lab-chat:v2"))[1:]
            reset(lab, reports)
            naive = timed_run(lab, load, str(NAIVE_PLAYBOOK), {"naive_model": "lab-chat:v2"})[1]
            reset(lab, reports)
            ours_skip = timed_run(lab, load, "playbooks/upgrade_model.yml",
                                  dict(rollout_vars, rollout_model="lab-chat:v2", rollout_skip_eval=True))[1]
            reset(lab, reports)
            failed_run = timed_run(lab, load, "playbooks/upgrade_model.yml",
                                   dict(rollout_vars, rollout_model="lab-chat:bad", rollout_skip_eval=True),
                                   check=False)[0]
            load.wait_for_answers(5, timeout=30)
    finally:
        restore_bandwidth(lab, artifacts)
    reset(lab, reports)
    if failed_run.returncode == 0:
        raise SystemExit("the rollout of lab-chat:bad passed its health gate: the bench cannot measure recovery")
    report = json.loads(sorted(Path(reports).glob("rollout-*.json"), key=lambda path: path.stat().st_mtime)[-1]
                        .read_text())
    recovery = [node["recovery_seconds"] for node in report["nodes"] if "recovery_seconds" in node]
    p95_steady, p95_during = percentile(steady, 0.95), percentile(during, 0.95)
    rows = [
        "| figure | value |",
        "| --- | ---: |",
        f"| (a) failed requests / sent, whole run (4 rollouts, 3 resets) | {len(load.failures)} / {load.sent} |",
        f"| (b) p95 latency steady / during upgrade_model.yml | {p95_steady * 1000:.0f} ms / "
        f"{p95_during * 1000:.0f} ms (ratio {p95_during / p95_steady:.2f}) |",
        f"| (c) upgrade_model.yml with evaluation | {ours:.0f} s |",
        f"| (c) upgrade_model.yml without evaluation | {ours_skip:.0f} s |",
        f"| (c) naive playbook (pull inside the serial loop, no gate) | {naive:.0f} s |",
        f"| (c) ratio naive / ours without evaluation | {naive / ours_skip:.2f} |",
        "| (d) failed gate to the old version back in rotation | %s |" % ", ".join("%.1f s" % s for s in recovery),
        "",
        f"{len(lab.group('ai_nodes'))} Ollama nodes (lab engine) behind two HAProxy load balancers; {args.workers} "
        f"client threads alternate streamed and non-streamed generations through the virtual IP for the whole run. "
        f"Downloads from the artifact host are limited to {args.bandwidth / 2**20:.1f} MiB/s each; lab-chat:v2 is "
        f"a {4} MiB model, so a pull takes about {4 * 2**20 / args.bandwidth:.0f} s per node. Our pre-pull runs "
        f"on every node at once (rollout_pull_throttle={len(lab.group('ai_nodes'))}); its backup phase is skipped "
        f"(rollout_skip_backup), as the naive playbook has none.",
    ]
    append_section("Model rollout under load", "bench/rollout.py --bandwidth %d" % args.bandwidth, rows)
    return 0 if not load.failures else 1


if __name__ == "__main__":
    sys.exit(main())
