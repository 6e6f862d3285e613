"""Make this machine able to run the lab: root, and podman/runc/debootstrap/ssh installed (apt on Debian)."""

import os
import shutil

from lab.proc import LabError, LabUnavailable, run

# command (or absolute path) -> Debian package that provides it
REQUIRED = {
    "podman": "podman",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mkfs.ext4": "e2fsprogs",
    "losetup": "mount",
    # podman without its recommended packages falls back to CNI, which lacks DNS and needs iptables anyway.
    "/usr/lib/podman/netavark": "netavark",
    "/usr/lib/podman/aardvark-dns": "aardvark-dns",
    "iptables": "iptables",
}
APT_TIMEOUT_S = 600


def missing_packages() -> list[str]:
    return sorted({package for needed, package in REQUIRED.items() if not present(needed)})


def present(needed: str) -> bool:
    return os.path.exists(needed) if needed.startswith("/") else shutil.which(needed) is not None


def ensure_host_ready(log=print) -> None:
    """Raise LabError with the reason when the lab cannot run here; install missing tools when we can."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (privileged podman containers, loop-mounted disks)")
    missing = missing_packages()
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise LabUnavailable(f"missing {', '.join(missing)} and no apt-get to install them")
    log(f"installing {' '.join(missing)} with apt-get")
    env_args = ["env", "DEBIAN_FRONTEND=noninteractive"]
    try:
        run([*env_args, "apt-get", "update", "-qq"], timeout=APT_TIMEOUT_S)
        run([*env_args, "apt-get", "install", "-y", "-qq", *missing], timeout=APT_TIMEOUT_S)
    except LabError as exc:
        raise LabUnavailable(f"could not install {', '.join(missing)}: {exc}") from exc
    still_missing = missing_packages()
    if still_missing:
        raise LabUnavailable(f"still missing after apt-get install: {', '.join(still_missing)}")
