"""CLI: python -m lab up|down|status|ssh|fault (run from the repository root with PYTHONPATH=tests)."""

import argparse
import os
import sys

from lab.core import Lab, down, lab_status
from lab.proc import LabError
from lab.topology import ENGINES, available_topologies, load_topology

HOST_FAULTS = ("stop", "start", "kill", "pause", "unpause", "isolate", "reconnect")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab", description="the lab of Debian 12 systemd hosts")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create or complete the lab (idempotent)")
    up.add_argument("--topology", default=os.environ.get("LAB_TOPOLOGY", "cluster"), choices=available_topologies(),
                    help="default: $LAB_TOPOLOGY or cluster")
    up.add_argument("--engine", default=os.environ.get("LAB_ENGINE", "ollama"), choices=ENGINES,
                    help="default: $LAB_ENGINE or ollama")
    sub.add_parser("down", help="remove every container, network, volume and file the lab made")
    sub.add_parser("status", help="hosts, addresses, state")
    ssh = sub.add_parser("ssh", help="run a command on a host over SSH")
    ssh.add_argument("host")
    ssh.add_argument("remote", nargs=argparse.REMAINDER)
    fault = sub.add_parser("fault", help="inject or repair a fault on a host")
    fault.add_argument("action", choices=[*HOST_FAULTS, "fill-disk", "free-disk", "kill-process"])
    fault.add_argument("host")
    fault.add_argument("process", nargs="?", help="process name for kill-process")
    fault.add_argument("--path", help="a path on the filesystem to fill or free (default: the host's lab disk)")
    fault.add_argument("--signal", default="KILL")
    return parser.parse_args(argv)


def command_up(args: argparse.Namespace) -> None:
    report = Lab(load_topology(args.topology, args.engine)).up()
    for change in report.changes:
        print(f"changed: {change}")
    verdict = "changed" if report.changed else "nothing changed (already up)"
    print(f"lab up ({args.topology}, {args.engine}): {verdict} in {report.seconds:.1f}s")


def command_down(_args: argparse.Namespace) -> None:
    removed = down()
    print("lab down: removed everything the lab made" if removed else "lab down: nothing to remove")


def command_status(_args: argparse.Namespace) -> None:
    lab = Lab.current()
    if lab is None:
        print("no lab is up")
        return
    print(f"topology {lab.topology.name}, engine {lab.topology.engine}, inventory {lab.inventory_path}")
    if lab.vip:
        print(f"virtual IP {lab.vip}")
    print(f"{'HOST':<12} {'ADDRESS':<15} {'CONTAINER':<10} {'SYSTEMD':<12} GROUPS")
    for host in lab_status():
        print(f"{host.name:<12} {host.address:<15} {host.state:<10} {host.systemd:<12} {host.groups}")


def current_lab() -> Lab:
    lab = Lab.current()
    if lab is None:
        raise LabError("no lab is up: run `python -m lab up` first")
    return lab


def command_ssh(args: argparse.Namespace) -> int:
    remote = [part for part in args.remote if part != "--"]
    done = current_lab().ssh(args.host, " ".join(remote) or "true", check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


def command_fault(args: argparse.Namespace) -> None:
    lab = current_lab()
    if args.action in HOST_FAULTS:
        getattr(lab, args.action)(args.host)
    elif args.action == "fill-disk":
        fill = lab.fill_disk(args.host, args.path)
        print(f"filled {fill.mount_point} on {fill.host}: {fill.filled_bytes} bytes, {fill.free_bytes_after} free")
    elif args.action == "free-disk":
        lab.free_disk(args.host, args.path)
    elif not args.process:
        raise LabError("kill-process needs a process name")
    else:
        lab.kill_process(args.host, args.process, signal=args.signal)
    print(f"fault {args.action} on {args.host}: done")


COMMANDS = {"up": command_up, "down": command_down, "status": command_status, "ssh": command_ssh,
            "fault": command_fault}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return COMMANDS[args.command](args) or 0
    except LabError as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
