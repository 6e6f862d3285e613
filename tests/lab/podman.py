"""Thin podman calls. Every name the lab creates starts with PREFIX; nothing else is ever touched."""

import json

from lab import PREFIX
from lab.proc import LabError, run

RUNTIME = "runc"  # crun refuses hybrid cgroups on these machines (lab-notes.md)
# Podman's default ulimits are higher than the host allows to set; lowering them works.
ULIMITS = ("nofile=4096:4096", "nproc=4096:4096")
LABEL = "nti-lab"


def podman(*args: str, timeout: float = 120, check: bool = True):
    return run(["podman", "--runtime", RUNTIME, *args], timeout=timeout, check=check)


def require_lab_name(name: str) -> str:
    if not name.startswith(PREFIX):
        raise LabError(f"refusing to touch {name!r}: lab objects are named {PREFIX}*")
    return name


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def image_refs(repository: str) -> list[str]:
    out = podman("images", "--filter", f"reference={repository}", "--format", "{{.Repository}}:{{.Tag}}").stdout
    return sorted(set(out.split()))


def remove_image(ref: str) -> bool:
    if not ref.startswith(f"localhost/{PREFIX}"):
        raise LabError(f"refusing to remove image {ref!r}: lab images are localhost/{PREFIX}*")
    return podman("rmi", ref, check=False, timeout=120).returncode == 0


def network_exists(name: str) -> bool:
    return podman("network", "exists", name, check=False).returncode == 0


def create_network(name: str, subnet: str, gateway: str) -> None:
    podman("network", "create", "--label", f"{LABEL}=1", "--subnet", subnet, "--gateway", gateway,
           require_lab_name(name))


def remove_network(name: str) -> None:
    # No --force: it would also remove containers that are not the lab's but use this network.
    podman("network", "rm", require_lab_name(name), timeout=60)


def network_subnet(name: str) -> str:
    info = json.loads(podman("network", "inspect", name).stdout)[0]
    return info["subnets"][0]["subnet"]


def lab_containers() -> list[dict]:
    """Containers carrying the lab label and the lab prefix (both, so a stranger's label does not count)."""
    out = podman("ps", "--all", "--filter", f"label={LABEL}", "--format", "json").stdout
    found = json.loads(out or "[]")
    return [c for c in found if c["Names"][0].startswith(PREFIX)]


def lab_networks() -> list[str]:
    out = podman("network", "ls", "--filter", f"label={LABEL}", "--format", "{{.Name}}").stdout.split()
    return [name for name in out if name.startswith(PREFIX)]


def lab_volumes() -> list[str]:
    out = podman("volume", "ls", "--filter", f"label={LABEL}", "--format", "{{.Name}}").stdout.split()
    return [name for name in out if name.startswith(PREFIX)]


def volume_exists(name: str) -> bool:
    return podman("volume", "exists", name, check=False).returncode == 0


def create_loop_volume(name: str, image_file: str, fs_type: str = "ext4") -> None:
    """A volume backed by a filesystem image, loop-mounted by podman when a container starts."""
    podman("volume", "create", "--label", f"{LABEL}=1", "--opt", f"type={fs_type}",
           "--opt", f"device={image_file}", "--opt", "o=loop", require_lab_name(name))


def inspect_container(name: str) -> dict | None:
    done = podman("container", "inspect", require_lab_name(name), check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)[0]


def run_systemd_container(
    *,
    name: str,
    hostname: str,
    image: str,
    network: str,
    ip: str,
    mac: str,
    memory: str,
    labels: dict[str, str],
    add_hosts: dict[str, str],
    mounts: list[str],
) -> None:
    args = ["run", "--detach", "--name", require_lab_name(name), "--hostname", hostname,
            "--privileged", "--systemd=always", "--memory", memory,
            "--network", network, "--ip", ip, "--mac-address", mac]
    for ulimit in ULIMITS:
        args += ["--ulimit", ulimit]
    for key, value in {LABEL: "1", **labels}.items():
        args += ["--label", f"{key}={value}"]
    for host, address in add_hosts.items():
        args += ["--add-host", f"{host}:{address}"]
    for mount in mounts:
        args += ["--mount", mount]
    podman(*args, image, "/sbin/init", timeout=180)


def remove_container(name: str) -> None:
    podman("rm", "--force", "--time", "5", require_lab_name(name), timeout=90)


def remove_volume(name: str) -> None:
    # No --force: it would also remove containers that are not the lab's but use this volume.
    podman("volume", "rm", require_lab_name(name), timeout=60)


def exec_in(name: str, *cmd: str, timeout: float = 60, check: bool = True, input_text: str | None = None):
    args = ["podman", "--runtime", RUNTIME, "exec"]
    if input_text is not None:
        args.append("--interactive")
    return run([*args, require_lab_name(name), *cmd], timeout=timeout, check=check, input_text=input_text)


def copy_into(name: str, src: str, dest: str) -> None:
    podman("cp", src, f"{require_lab_name(name)}:{dest}", timeout=300)


def lifecycle(action: str, name: str, timeout: float = 90) -> None:
    """start / stop / kill / pause / unpause one lab container."""
    extra = ["--time", "10"] if action == "stop" else []
    podman(action, *extra, require_lab_name(name), timeout=timeout)


def network_connect(network: str, name: str, ip: str, mac: str) -> None:
    podman("network", "connect", "--ip", ip, "--mac-address", mac, require_lab_name(network), require_lab_name(name))


def network_disconnect(network: str, name: str) -> None:
    podman("network", "disconnect", require_lab_name(network), require_lab_name(name))
