"""Fault hooks: make a lab host fail in the ways production hosts fail, and bring it back.

Mixed into :class:`lab.core.Lab`; every method takes the inventory hostname (``ai1``) or container name.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lab import podman
from lab.proc import LabError, wait_until

# A filesystem bigger than this is taken to be this machine's own disk, which a test must never fill.
MAX_FILL_BYTES = 16 * 1024**3
FILL_FILES = (".nti-lab-fill", ".nti-lab-fill-tail")


@dataclass(frozen=True)
class Filesystem:
    mount_point: str
    size: int
    free: int


@dataclass
class DiskFill:
    host: str
    mount_point: str
    filled_bytes: int
    free_bytes_after: int


class Faults:
    # Provided by Lab: topology, hosts, exec, wait_ready, name_of.

    def container_of(self, host: str) -> str:
        return self.topology.host(host).container

    # ---- whole-host faults -------------------------------------------------------------------------------
    def stop(self, host: str) -> None:
        """Clean shutdown (SIGRTMIN+3 to systemd, then SIGKILL after 10 s)."""
        podman.lifecycle("stop", self.container_of(host))

    def kill(self, host: str) -> None:
        """Power cut: SIGKILL to the whole host at once."""
        podman.lifecycle("kill", self.container_of(host))

    def start(self, host: str, *, wait: bool = True) -> None:
        """Boot a stopped or killed host again (same address, same disk) and wait until it is ready."""
        podman.lifecycle("start", self.container_of(host))
        if wait:
            self.wait_ready([self.name_of(host)])

    def pause(self, host: str) -> None:
        """Freeze every process (cgroup freezer): the host hangs, connections time out instead of failing."""
        podman.lifecycle("pause", self.container_of(host))

    def unpause(self, host: str) -> None:
        podman.lifecycle("unpause", self.container_of(host))

    # ---- network -----------------------------------------------------------------------------------------
    def isolate(self, host: str) -> None:
        """Unplug the host's network interface: no peer, LB or this machine can reach it, nor it them."""
        podman.network_disconnect(self.topology.network, self.container_of(host))

    def reconnect(self, host: str, *, wait: bool = True) -> None:
        """Plug it back in with its own address."""
        spec = self.topology.host(host)
        podman.network_connect(self.topology.network, spec.container, spec.address, spec.mac)
        if wait:
            self.wait_ready([spec.name])

    # ---- disk --------------------------------------------------------------------------------------------
    def fill_disk(self, host: str, path: str | None = None) -> DiskFill:
        """Fill the filesystem holding ``path`` (the host's lab disk by default) until writes fail with ENOSPC."""
        spec = self.topology.host(host)
        filesystem = self.filesystem_of(spec.name, path or spec.disk_path)
        if filesystem.size > MAX_FILL_BYTES:
            raise LabError(f"refusing to fill {filesystem.mount_point} on {spec.name}: {filesystem.size} bytes is "
                           f"this machine's disk; fill the host's lab disk ({spec.disk_path}) instead")
        fill = f"{filesystem.mount_point.rstrip('/')}/{FILL_FILES[0]}"
        self.exec(spec.name, "fallocate", "--length", str(filesystem.free), fill, check=False, timeout=120)
        left = self.top_up(spec.name, filesystem.mount_point)
        return DiskFill(host=spec.name, mount_point=filesystem.mount_point, filled_bytes=filesystem.free - left,
                        free_bytes_after=left)

    def top_up(self, host: str, mount_point: str, rounds: int = 5) -> int:
        """Write until ENOSPC, flush, repeat: ext4 gives back delayed-allocation reservations after a flush."""
        tail = f"{mount_point.rstrip('/')}/{FILL_FILES[1]}"
        left = -1
        for _round in range(rounds):
            self.exec(host, "dd", "if=/dev/zero", f"of={tail}", "bs=64k", "oflag=append", "conv=notrunc",
                      "status=none", check=False, timeout=300)
            self.exec(host, "sync", "--file-system", mount_point, check=False, timeout=120)
            left = self.filesystem_of(host, mount_point).free
            if left == 0:
                break
        return left

    def free_disk(self, host: str, path: str | None = None) -> None:
        spec = self.topology.host(host)
        mount_point = self.filesystem_of(spec.name, path or spec.disk_path).mount_point
        self.exec(spec.name, "rm", "-f", *(f"{mount_point.rstrip('/')}/{name}" for name in FILL_FILES))

    def filesystem_of(self, host: str, path: str) -> Filesystem:
        """The filesystem holding path on host, with its size and free bytes."""
        out = self.exec(host, "df", "--block-size=1", "--output=target,size,avail", path).stdout.splitlines()
        target, size, avail = out[-1].split()
        return Filesystem(mount_point=target, size=int(size), free=int(avail))

    # ---- processes ---------------------------------------------------------------------------------------
    def kill_process(self, host: str, name: str, *, signal: str = "KILL", full: bool = False,
                     wait_gone_s: float = 10) -> None:
        """Send a signal to the processes called ``name`` on the host (``full``: match the whole command line).

        Waits for those very processes (by PID) to exit: a service manager may start a new one of the same
        name at once, so waiting for the name to disappear could wait forever.
        """
        targets = self.process_ids(host, name, full=full)
        if not targets:
            raise LabError(f"no process {name!r} on {host}")
        done = self.exec(host, "kill", "-s", signal, *sorted(targets), check=False)
        if done.returncode != 0 and targets & self.process_ids(host, name, full=full):
            raise LabError(f"kill on {host} failed: {done.stderr.strip()}")
        if signal in ("KILL", "9", "TERM", "15"):
            wait_until(lambda: not targets & self.process_ids(host, name, full=full), deadline_s=wait_gone_s,
                       what=f"{name} to exit on {host}", interval_s=0.2)

    def process_ids(self, host: str, name: str, *, full: bool = False) -> set[str]:
        match = ["--full", name] if full else ["--exact", name]
        return set(self.exec(host, "pgrep", *match, check=False).stdout.split())

    # ---- a fault for the length of a with-block, repaired even when the block fails ---------------------
    @contextmanager
    def isolated(self, host: str) -> Iterator[None]:
        self.isolate(host)
        try:
            yield
        finally:
            self.reconnect(host)

    @contextmanager
    def stopped(self, host: str, *, kill: bool = False) -> Iterator[None]:
        if kill:
            self.kill(host)
        else:
            self.stop(host)
        try:
            yield
        finally:
            self.start(host)

    @contextmanager
    def paused(self, host: str) -> Iterator[None]:
        self.pause(host)
        try:
            yield
        finally:
            self.unpause(host)

    @contextmanager
    def disk_full(self, host: str, path: str | None = None) -> Iterator[DiskFill]:
        fill = self.fill_disk(host, path)
        try:
            yield fill
        finally:
            self.free_disk(host, path)
