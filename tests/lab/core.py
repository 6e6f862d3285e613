"""The lab's lifecycle: up (idempotent), down (exactly what the lab made), status, and ways to reach hosts."""

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab import artifact_host, bootstrap, image, inventory, podman, site_layer
from lab.faults import Faults
from lab.paths import (
    ARTIFACT_BUILD_DIR,
    DISK_DIR,
    INVENTORY_DIR,
    INVENTORY_PATH,
    KEY_PATH,
    LOCK_PATH,
    SSH_DIR,
    STATE_DIR,
)
from lab.proc import LabError, LabUnavailable, run, wait_until
from lab.topology import HostSpec, Topology, load_topology

TOPOLOGY_LABEL = "nti-lab.topology"
ENGINE_LABEL = "nti-lab.engine"
SPEC_LABEL = "nti-lab.spec"
GROUPS_LABEL = "nti-lab.groups"
READY_STATES = ("running", "degraded")
BOOT_DEADLINE_S = 180
SSH_DEADLINE_S = 60


@dataclass
class UpReport:
    changes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass
class HostStatus:
    name: str
    container: str
    groups: str
    address: str
    state: str
    systemd: str


class Lab(Faults):
    """One topology's hosts. ``Lab.current()`` finds the running one; ``Lab(load_topology(...)).up()`` makes it."""

    def __init__(self, topology: Topology, log=print):
        self.topology = topology
        self.log = log

    # ---- what tests read -------------------------------------------------------------------------------
    @property
    def hosts(self) -> dict[str, HostSpec]:
        return {spec.name: spec for spec in self.topology.hosts}

    @property
    def inventory_path(self) -> Path:
        return INVENTORY_PATH

    @property
    def key_path(self) -> Path:
        return KEY_PATH

    @property
    def vip(self) -> str | None:
        return self.topology.vip

    @property
    def artifact_url(self) -> str:
        return artifact_host.url(self.topology.group("artifacts")[0].address)

    def group(self, group: str) -> list[str]:
        return [spec.name for spec in self.topology.group(group)]

    @classmethod
    def current(cls, log=print) -> "Lab | None":
        """The lab whose containers exist now, or None."""
        labels = running_lab_labels()
        if labels is None:
            return None
        return cls(load_topology(labels[TOPOLOGY_LABEL], labels[ENGINE_LABEL]), log=log)

    # ---- up ----------------------------------------------------------------------------------------------
    def up(self) -> UpReport:
        with lab_lock():
            return self.up_locked()

    def up_locked(self) -> UpReport:
        start = time.monotonic()
        report = UpReport()
        bootstrap.ensure_host_ready(self.log)
        self.refuse_other_lab()
        if ensure_ssh_key():
            report.changes.append("generated the SSH key")
        report.changes += self.ensure_hosts_exist()
        self.wait_booted(self.topology.names())
        report.changes += self.install_ssh_key()
        self.wait_ssh(self.topology.names())
        artifacts = self.topology.group("artifacts")[0]
        if artifact_host.deploy(artifacts.container, artifacts.address, ARTIFACT_BUILD_DIR, self.log,
                                engine=self.topology.engine):
            report.changes.append(f"deployed artifacts to {artifacts.name}")
        if inventory.write_inventory(self.topology):
            report.changes.append(f"wrote {INVENTORY_PATH}")
        if site_layer.write(self.topology):
            report.changes.append(f"wrote {site_layer.LAYER_DIR}")
        report.seconds = time.monotonic() - start
        return report

    def ensure_hosts_exist(self) -> list[str]:
        changes = []
        image_ref, built = environment_step(image.ensure_image, self.log)
        if built:
            changes.append(f"built image {image_ref}")
        if self.ensure_network():
            changes.append(f"created network {self.topology.network}")
        for spec in self.topology.hosts:
            changes += environment_step(self.ensure_disk, spec)
            changes += environment_step(self.ensure_container, spec, image_ref)
        return changes

    def replace_host(self, name: str) -> UpReport:
        """Swap a host for a new machine: same name and address, the base image and an empty disk."""
        spec = self.hosts[name]
        with lab_lock():
            if podman.inspect_container(spec.container) is not None:
                podman.remove_container(spec.container)
            if podman.volume_exists(spec.volume):
                podman.remove_volume(spec.volume)
            (DISK_DIR / f"{spec.name}.img").unlink(missing_ok=True)
            return self.up_locked()

    def refuse_other_lab(self) -> None:
        labels = running_lab_labels()
        if labels is None:
            return
        running = (labels[TOPOLOGY_LABEL], labels[ENGINE_LABEL])
        if running != (self.topology.name, self.topology.engine):
            raise LabError(
                f"a {running[0]} lab with engine {running[1]} is up; run `python -m lab down` first"
            )

    def ensure_network(self) -> bool:
        name = self.topology.network
        if podman.network_exists(name):
            subnet = podman.network_subnet(name)
            if subnet != self.topology.subnet:
                raise LabError(f"network {name} has subnet {subnet}, want {self.topology.subnet}: run lab down")
            return False
        podman.create_network(name, self.topology.subnet, self.topology.gateway)
        return True

    def ensure_disk(self, spec: HostSpec) -> list[str]:
        if podman.volume_exists(spec.volume):
            return []
        DISK_DIR.mkdir(parents=True, exist_ok=True)
        disk_file = DISK_DIR / f"{spec.name}.img"
        # Sparse file: it only takes this machine's disk space for what the host writes, up to its size.
        run(["truncate", "--size", spec.disk_size.upper(), str(disk_file)], timeout=30)
        # -m 0: no blocks reserved for root, so a full disk refuses root's writes too.
        run(["mkfs.ext4", "-q", "-F", "-m", "0", str(disk_file)], timeout=120)
        podman.create_loop_volume(spec.volume, str(disk_file))
        return [f"created disk {spec.volume} ({spec.disk_size})"]

    def host_fingerprint(self, spec: HostSpec, image_ref: str) -> str:
        wanted = {
            "image": image_ref, "address": spec.address, "mac": spec.mac, "memory": spec.memory, "groups": spec.groups,
            "disk": [spec.disk_path, spec.disk_size], "peers": self.peer_entries(spec),
            "network": self.topology.network,
        }
        return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]

    def peer_entries(self, spec: HostSpec) -> dict[str, str]:
        return {other.name: other.address for other in self.topology.hosts if other.name != spec.name}

    def ensure_container(self, spec: HostSpec, image_ref: str) -> list[str]:
        fingerprint = self.host_fingerprint(spec, image_ref)
        info = podman.inspect_container(spec.container)
        if info is not None and info["Config"]["Labels"].get(SPEC_LABEL) != fingerprint:
            podman.remove_container(spec.container)
            self.create_container(spec, image_ref, fingerprint)
            return [f"recreated {spec.name} (its specification changed)"]
        if info is None:
            self.create_container(spec, image_ref, fingerprint)
            return [f"created {spec.name} at {spec.address}"]
        if info["State"]["Paused"]:
            podman.lifecycle("unpause", spec.container)
            return [f"unpaused {spec.name}"]
        if not info["State"]["Running"]:
            podman.lifecycle("start", spec.container)
            return [f"started {spec.name}"]
        if not self.attached(info):
            podman.network_connect(self.topology.network, spec.container, spec.address, spec.mac)
            return [f"reconnected {spec.name} to {self.topology.network}"]
        return []

    def attached(self, info: dict) -> bool:
        return self.topology.network in (info["NetworkSettings"].get("Networks") or {})

    def create_container(self, spec: HostSpec, image_ref: str, fingerprint: str) -> None:
        podman.run_systemd_container(
            name=spec.container,
            hostname=spec.name,
            image=image_ref,
            network=self.topology.network,
            ip=spec.address,
            mac=spec.mac,
            memory=spec.memory,
            labels={
                TOPOLOGY_LABEL: self.topology.name,
                ENGINE_LABEL: self.topology.engine,
                SPEC_LABEL: fingerprint,
                GROUPS_LABEL: ",".join(spec.groups),
            },
            add_hosts=self.peer_entries(spec),
            mounts=[f"type=volume,src={spec.volume},dst={spec.disk_path}"],
        )

    # ---- readiness ---------------------------------------------------------------------------------------
    def systemd_state(self, name: str) -> str:
        done = podman.exec_in(self.hosts[name].container, "systemctl", "is-system-running", check=False, timeout=15)
        return done.stdout.strip() or "unreachable"

    def wait_booted(self, names: Sequence[str], deadline_s: float = BOOT_DEADLINE_S) -> None:
        pending = set(names)

        def all_booted() -> bool:
            states = on_each(self.systemd_state, sorted(pending))
            pending.difference_update({name for name, state in states.items() if state in READY_STATES})
            return not pending

        wait_until(all_booted, deadline_s=deadline_s, what=f"systemd to finish booting on {sorted(pending)}")

    def ssh_answers(self, name: str) -> bool:
        return self.ssh(name, "true", check=False, timeout=10).returncode == 0

    def wait_ssh(self, names: Sequence[str], deadline_s: float = SSH_DEADLINE_S) -> None:
        pending = set(names)

        def all_answer() -> bool:
            answers = on_each(self.ssh_answers, sorted(pending))
            pending.difference_update({name for name, answered in answers.items() if answered})
            return not pending

        wait_until(all_answer, deadline_s=deadline_s, what=f"SSH on {sorted(pending)}")

    def wait_ready(self, names: Sequence[str] | None = None) -> None:
        """Wait until systemd has booted and SSH answers on these hosts (all by default)."""
        names = list(names or self.topology.names())
        self.wait_booted(names)
        self.wait_ssh(names)

    def install_ssh_key(self) -> list[str]:
        installed = on_each(self.install_ssh_key_on, self.topology.names())
        return [f"installed the SSH key on {name}" for name, changed in installed.items() if changed]

    def install_ssh_key_on(self, name: str) -> bool:
        public_key = KEY_PATH.with_suffix(".pub").read_text()
        container = self.hosts[name].container
        if podman.exec_in(container, "cat", "/root/.ssh/authorized_keys", check=False).stdout == public_key:
            return False
        podman.exec_in(container, "install", "-d", "-m", "700", "/root/.ssh")
        podman.exec_in(container, "sh", "-c", "umask 077; cat > /root/.ssh/authorized_keys", input_text=public_key)
        return True

    # ---- reaching hosts ----------------------------------------------------------------------------------
    def ssh(self, host: str, command: str | Sequence[str], *, timeout: float = 120, check: bool = True,
            input_text: str | None = None) -> subprocess.CompletedProcess:
        """Run a command on a host over SSH, as Ansible would reach it. A list is quoted for the remote shell."""
        remote = command if isinstance(command, str) else shlex.join(command)
        args = ["ssh", "-i", str(KEY_PATH), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                f"root@{self.hosts[self.name_of(host)].address}", remote]
        return run(args, timeout=timeout, check=check, input_text=input_text)

    def exec(self, host: str, *command: str, timeout: float = 60, check: bool = True):
        """Run a command in a host through podman (works while its network is cut)."""
        return podman.exec_in(self.hosts[self.name_of(host)].container, *command, timeout=timeout, check=check)

    def wait_until_http(self, url: str, deadline_s: float = 30) -> float:
        """Wait until url answers HTTP (any status); return the seconds waited."""
        return wait_until(lambda: artifact_host.answers_http_url(url), deadline_s=deadline_s, what=f"HTTP at {url}")

    def name_of(self, host: str) -> str:
        return self.topology.host(host).name

    def run_playbook(self, playbook: str | Path, extra_vars: dict | None = None, *, check: bool = True,
                     args: Sequence[str] = (), timeout: float = 1800, cwd: str | Path | None = None,
                     env: dict[str, str] | None = None,
                     inventory_args: Sequence[str] | None = None) -> subprocess.CompletedProcess:
        """ansible-playbook against the lab inventory (or ``inventory_args``, as ``["-i", path, ...]``); raises
        LabError with the output when it fails."""
        command = [ansible_command("ansible-playbook"), *inventory_or_lab(inventory_args), str(playbook), *args]
        if extra_vars:
            command += ["--extra-vars", json.dumps(extra_vars)]
        return run(command, timeout=timeout, check=check, cwd=cwd and str(cwd), env=ansible_env(env))

    def ansible(self, pattern: str, module: str, module_args: str = "", *, check: bool = True,
                timeout: float = 300, cwd: str | Path | None = None,
                inventory_args: Sequence[str] | None = None) -> subprocess.CompletedProcess:
        """An ad-hoc ansible command against the lab inventory (or ``inventory_args``, as in run_playbook)."""
        command = [ansible_command("ansible"), *inventory_or_lab(inventory_args), pattern, "-m", module]
        if module_args:
            command += ["-a", module_args]
        return run(command, timeout=timeout, check=check, cwd=cwd and str(cwd), env=ansible_env(None))

    # ---- status ------------------------------------------------------------------------------------------
    def status(self) -> list[HostStatus]:
        return lab_status()

    def heal(self) -> UpReport:
        """Undo every fault: start, unpause and reconnect hosts (lab up), free filled disks."""
        report = self.up()
        on_each(self.free_disk, self.topology.names())
        return report


def environment_step(step: Callable, *args):
    """Building the image, a loop-mounted disk or a container fails only when this machine cannot run the lab."""
    try:
        return step(*args)
    except LabUnavailable:
        raise
    except LabError as exc:
        raise LabUnavailable(f"this machine cannot run lab hosts: {exc}") from exc


def on_each(action: Callable[[str], object], names: Sequence[str]) -> dict[str, object]:
    """Run action(name) for every host at once (each call is a podman exec or ssh: mostly waiting)."""
    if not names:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
        return dict(zip(names, pool.map(action, names), strict=True))


def inventory_or_lab(inventory_args: Sequence[str] | None) -> list[str]:
    """``-i`` arguments: the given ones, or the lab inventory."""
    return ["-i", str(INVENTORY_PATH)] if inventory_args is None else list(inventory_args)


def ansible_env(extra: dict[str, str] | None) -> dict[str, str]:
    # Without a terminal ansible would still colour its output; plain text reads better in test failures.
    return {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **(extra or {})}


def ansible_command(name: str) -> str:
    """Prefer the ansible next to this Python (the project venv), then PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else (shutil.which(name) or name)


def running_lab_labels() -> dict[str, str] | None:
    for container in podman.lab_containers():
        labels = container.get("Labels") or {}
        if TOPOLOGY_LABEL in labels and ENGINE_LABEL in labels:
            return labels
    return None


def ensure_ssh_key() -> bool:
    if KEY_PATH.is_file() and KEY_PATH.with_suffix(".pub").is_file():
        return False
    SSH_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    KEY_PATH.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nti-lab", "-f", str(KEY_PATH)], timeout=30)
    return True


def lab_status() -> list[HostStatus]:
    statuses = []
    for container in podman.lab_containers():
        name = container["Names"][0]
        labels = container.get("Labels") or {}
        info = podman.inspect_container(name) or {}
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        address = ",".join(net.get("IPAddress", "") for net in networks.values())
        state = container.get("State", "?")
        systemd = "-"
        if state == "running":
            done = podman.exec_in(name, "systemctl", "is-system-running", check=False, timeout=15)
            systemd = done.stdout.strip() or "unreachable"
            address = address or "cut off"
        statuses.append(HostStatus(name=name.removeprefix("nti-lab-"), container=name,
                                   groups=labels.get(GROUPS_LABEL, "?"), address=address or "-", state=state,
                                   systemd=systemd))
    return sorted(statuses, key=lambda status: status.name)


@contextmanager
def lab_lock(deadline_s: float = 900) -> Iterator[None]:
    """One up or down at a time on this machine (two test runs, or a test run and `make lab-down`)."""
    with LOCK_PATH.open("w") as lock:
        wait_until(lambda: try_lock(lock.fileno()), deadline_s=deadline_s, what=f"the lab lock {LOCK_PATH}")
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def down(log=print) -> list[str]:
    """Remove every container, network and volume the lab made, its disks, key and inventory; keep the image."""
    with lab_lock():
        return down_locked(log)


def down_locked(log=print) -> list[str]:
    removed = []
    for container in podman.lab_containers():
        podman.remove_container(container["Names"][0])
        removed.append(f"container {container['Names'][0]}")
    for network in podman.lab_networks():
        podman.remove_network(network)
        removed.append(f"network {network}")
    for volume in podman.lab_volumes():
        podman.remove_volume(volume)
        removed.append(f"volume {volume}")
    for generated in (DISK_DIR, SSH_DIR, ARTIFACT_BUILD_DIR, INVENTORY_DIR, site_layer.LAYER_DIR):
        if generated.exists():
            shutil.rmtree(generated)
            removed.append(str(generated))
    if STATE_DIR.is_dir() and not any(STATE_DIR.iterdir()):
        STATE_DIR.rmdir()
    for item in removed:
        log(f"removed {item}")
    return removed
