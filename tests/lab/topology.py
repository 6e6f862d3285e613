"""Topologies are data (topologies/*.yml); this module turns one into host specifications."""

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab import PREFIX
from lab.proc import LabError

TOPOLOGY_DIR = Path(__file__).resolve().parent / "topologies"
ENGINES = ("ollama", "vllm")
# spare_ai_nodes: lab hosts ready to become AI nodes (scale_out adds them to ai_nodes), serving nothing until then.
INVENTORY_GROUPS = ("ai_nodes", "spare_ai_nodes", "loadbalancers", "monitoring", "storage", "artifacts")


@dataclass(frozen=True)
class HostSpec:
    name: str  # inventory hostname and the host's own hostname
    groups: tuple[str, ...]
    address: str
    memory: str
    disk_path: str
    disk_size: str

    @property
    def container(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def mac(self) -> str:
        """Fixed MAC from the address: a host plugged back in keeps it, so peers' ARP entries stay valid."""
        octets = [int(part) for part in self.address.split(".")]
        return ":".join(f"{byte:02x}" for byte in [0x02, 0x6E, *octets])

    @property
    def volume(self) -> str:
        return f"{PREFIX}{self.name}-disk"


@dataclass(frozen=True)
class Topology:
    name: str
    engine: str
    description: str
    network: str
    subnet: str
    gateway: str
    vip: str | None
    hosts: tuple[HostSpec, ...] = field(default_factory=tuple)

    def host(self, name: str) -> HostSpec:
        for spec in self.hosts:
            if name in (spec.name, spec.container):
                return spec
        raise LabError(f"no host {name!r} in topology {self.name} (hosts: {', '.join(self.names())})")

    def names(self) -> list[str]:
        return [spec.name for spec in self.hosts]

    def group(self, group: str) -> list[HostSpec]:
        return [spec for spec in self.hosts if group in spec.groups]


def available_topologies() -> list[str]:
    return sorted(path.stem for path in TOPOLOGY_DIR.glob("*.yml") if not path.stem.startswith("_"))


def load_topology(name: str, engine: str = "ollama") -> Topology:
    if name not in available_topologies():
        raise LabError(f"unknown topology {name!r}; choose one of {', '.join(available_topologies())}")
    if engine not in ENGINES:
        raise LabError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    settings = read_yaml(TOPOLOGY_DIR / "_defaults.yml") | read_yaml(TOPOLOGY_DIR / f"{name}.yml")
    net = settings["network"]
    entries = [*settings["hosts"], *settings.get("common_hosts", [])]
    addresses = host_addresses(net, len(entries))
    pairs = zip(entries, addresses, strict=True)
    hosts = tuple(host_spec(entry, address, settings, engine) for entry, address in pairs)
    check_groups(name, hosts)
    return Topology(
        name=name,
        engine=engine,
        description=settings.get("description", ""),
        network=net["name"],
        subnet=net["subnet"],
        gateway=net["gateway"],
        vip=net["vip"] if settings.get("vip") else None,
        hosts=hosts,
    )


def read_yaml(path: Path) -> dict:
    with path.open() as stream:
        return yaml.safe_load(stream) or {}


def host_addresses(net: dict, count: int) -> list[str]:
    subnet = ipaddress.ip_network(net["subnet"])
    first = ipaddress.ip_address(net["first_host_address"])
    addresses = [str(first + offset) for offset in range(count)]
    reserved = {net["gateway"], net["vip"]}
    for address in addresses:
        if ipaddress.ip_address(address) not in subnet or address in reserved:
            raise LabError(f"host address {address} is outside {subnet} or reserved; change first_host_address")
    return addresses


def host_spec(entry: dict, address: str, settings: dict, engine: str) -> HostSpec:
    groups = tuple(entry["groups"])
    disk = settings["disk"]
    return HostSpec(
        name=entry["name"],
        groups=groups,
        address=address,
        memory=entry.get("memory") or memory_for(groups, settings["memory"], engine),
        disk_path=disk["path"],
        disk_size=entry.get("disk_size") or first_match(groups, disk.get("groups", {})) or disk["size"],
    )


def memory_for(groups: tuple[str, ...], memory: dict, engine: str) -> str:
    per_engine = memory.get("engines", {}).get(engine, {})
    return first_match(groups, per_engine) or first_match(groups, memory.get("groups", {})) or memory["default"]


def first_match(groups: tuple[str, ...], table: dict) -> str | None:
    for group in groups:
        if group in table:
            return str(table[group])
    return None


def check_groups(name: str, hosts: tuple[HostSpec, ...]) -> None:
    for spec in hosts:
        unknown = set(spec.groups) - set(INVENTORY_GROUPS)
        if unknown:
            raise LabError(f"topology {name}: host {spec.name} has unknown groups {sorted(unknown)}")
    names = [spec.name for spec in hosts]
    if len(set(names)) != len(names):
        raise LabError(f"topology {name}: host names repeat: {names}")
