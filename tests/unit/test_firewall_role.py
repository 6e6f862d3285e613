"""The firewall role's nftables rules: rendered by Ansible for an inventory, checked by `nft -c`, loaded into the kernel
inside a private network namespace (never this machine's own rules) and read back as the kernel holds them. The role's
tasks run there too, beside another tool's table that must survive them."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess

import pytest
import yaml
from role_templates import render_role_template
from test_haproxy_security import ANSIBLE_ENVIRONMENT, failure_messages, role_tasks_command, run_role_tasks

NFT = shutil.which("nft")
pytestmark = pytest.mark.skipif(NFT is None, reason="nft is not installed (Debian package nftables)")

CLUSTER = {"ai_nodes": {"ai1": "10.0.0.10", "ai2": "10.0.0.11"},
           "loadbalancers": {"lb1": "10.0.0.30", "lb2": "10.0.0.31"}, "monitoring": {"mon1": "10.0.0.20"}}
CONTROLLER = "198.51.100.7"
SSH_CLIENT = "%s 51234 22" % CONTROLLER


def private_namespaces_work():
    try:
        return subprocess.run(["unshare", "--net", NFT, "list", "ruleset"], check=False, capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_netns = pytest.mark.skipif(NFT is None or not private_namespaces_work(),
                                 reason="cannot make a private network namespace here (unshare --net)")


def render(tmp_path, groups=None, **role_vars):
    """The ruleset for ai1, with ``role_vars`` as extra variables (the connection came from CONTROLLER)."""
    extra = {"_firewall_ssh_client": {"stdout": SSH_CLIENT}} | role_vars
    return render_role_template(tmp_path, "firewall", "namtech.nft.j2", groups or CLUSTER, "ai1", extra_vars=extra)


def load_in_private_namespace(ruleset):
    """``nft -j list ruleset`` after loading ``ruleset`` into an empty network namespace of its own."""
    finished = subprocess.run(["unshare", "--net", "sh", "-c", '"$0" -f "$1" && "$0" -j list ruleset', NFT,
                               str(ruleset)], check=False, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout)["nftables"]


def element_text(element):
    """A set element as text: a port, or an address as the network it is (10.0.0.20/32)."""
    if isinstance(element, dict) and "prefix" in element:
        return "%s/%d" % (element["prefix"]["addr"], element["prefix"]["len"])
    if isinstance(element, str):
        return str(ipaddress.ip_network(element))
    return str(element)


def covered(*addresses):
    """The networks ``addresses`` cover, merged as nftables' auto-merge does (10.0.0.30 and .31 are 10.0.0.30/31)."""
    networks = [ipaddress.ip_network(address) for address in addresses]
    return {str(network) for version in (4, 6)
            for network in ipaddress.collapse_addresses(n for n in networks if n.version == version)}


def sets_of(ruleset, table="namtech"):
    """``{set name: {element as text}}`` of ``table``."""
    return {item["set"]["name"]: {element_text(element) for element in item["set"].get("elem", [])}
            for item in ruleset if "set" in item and item["set"]["table"] == table}


def rule_texts(ruleset_path):
    """The rules of the input chain, one line each, as written in the rendered file."""
    text = ruleset_path.read_text()
    chain = text[text.index("chain input {"):]
    return [line.strip() for line in chain.splitlines()[1:] if line.strip() and not line.strip().startswith(("#", "}"))]


def test_nft_accepts_the_rules(tmp_path):
    ruleset = render(tmp_path, firewall_ssh_sources=["192.0.2.0/24"])
    finished = subprocess.run([NFT, "-c", "-f", str(ruleset)], check=False, capture_output=True, text=True,
                              timeout=60)
    assert finished.returncode == 0, finished.stderr


@needs_netns
def test_the_engine_is_for_the_load_balancers_and_monitoring_and_the_exporters_for_monitoring(tmp_path):
    ruleset = render(tmp_path, firewall_extra_allowed_sources=["fd00:1::/64"],
                     firewall_engine_extra_sources=["10.1.0.0/16"])
    assert sets_of(load_in_private_namespace(ruleset)) == {
        "engine_ports": {"11434"}, "exporter_ports": {"9100", "9778", "9779"},
        "engine_sources_v4": covered("10.0.0.30", "10.0.0.31", "10.0.0.20", "10.1.0.0/16", CONTROLLER),
        "engine_sources_v6": covered("fd00:1::/64"),
        "exporter_sources_v4": covered("10.0.0.20"), "exporter_sources_v6": covered("fd00:1::/64")}
    assert rule_texts(ruleset) == [
        "type filter hook input priority filter; policy accept;",
        "ct state established,related accept",
        'iif "lo" accept',
        "tcp dport @engine_ports ip saddr @engine_sources_v4 accept",
        "tcp dport @engine_ports ip6 saddr @engine_sources_v6 accept",
        "tcp dport @engine_ports counter reject with tcp reset",
        "tcp dport @exporter_ports ip saddr @exporter_sources_v4 accept",
        "tcp dport @exporter_ports ip6 saddr @exporter_sources_v6 accept",
        "tcp dport @exporter_ports counter reject with tcp reset",
    ]


@needs_netns
def test_the_controller_reaches_the_engine_only_while_allowed(tmp_path):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "refused").mkdir()
    allowed = sets_of(load_in_private_namespace(render(tmp_path / "allowed")))
    refused = sets_of(load_in_private_namespace(render(tmp_path / "refused", firewall_allow_controller=False)))
    assert allowed["engine_sources_v4"] == covered("10.0.0.30", "10.0.0.31", "10.0.0.20", CONTROLLER)
    assert refused["engine_sources_v4"] == covered("10.0.0.30", "10.0.0.31", "10.0.0.20")
    assert allowed["exporter_sources_v4"] == refused["exporter_sources_v4"] == covered("10.0.0.20")


@needs_netns
def test_restricted_ssh_always_lets_the_ansible_controller_in(tmp_path):
    ruleset = render(tmp_path, firewall_ssh_sources=["192.0.2.0/24", "2001:db8::/32"], firewall_ssh_port=2222,
                     firewall_deny_action="drop")
    sets = sets_of(load_in_private_namespace(ruleset))
    assert sets["ssh_sources_v4"] == covered("192.0.2.0/24", CONTROLLER)
    assert sets["ssh_sources_v6"] == {"2001:db8::/32"}
    assert rule_texts(ruleset)[3:6] == [
        "tcp dport 2222 ip saddr @ssh_sources_v4 accept",
        "tcp dport 2222 ip6 saddr @ssh_sources_v6 accept",
        "tcp dport 2222 counter drop"]
    assert "# SSH: firewall_ssh_sources, and the address Ansible last connected from (%s)." % CONTROLLER in (
        ruleset.read_text())


def test_ssh_is_left_alone_by_default(tmp_path):
    text = render(tmp_path).read_text()
    assert "ssh_sources" not in text
    assert "dport 22" not in text


@pytest.mark.parametrize(("engine_vars", "ports"), [
    ({"ai_engine": "ollama", "ollama_port": 11500}, "11500"),
    ({"ai_engine": "vllm", "vllm_models": [{"name": "chat", "port": 8000}, {"name": "embed", "port": 8001}]},
     "8000, 8001"),
    ({"ai_engine": "ollama", "ollama_port": 11435, "llm_meter_enabled": True, "llm_meter_port": 11434},
     "11435, 11434"),
], ids=["ollama", "vllm", "ollama-behind-llm-meter"])
def test_the_engine_ports_follow_the_engine_variables(tmp_path, engine_vars, ports):
    rendered = render_role_template(tmp_path, "firewall", "namtech.nft.j2", CLUSTER, "ai1", all_vars=engine_vars)
    text = rendered.read_text()
    assert "elements = { %s }" % ports in text


def test_only_the_namtech_table_is_replaced(tmp_path):
    text = render(tmp_path).read_text()
    assert re.findall(r"^(?:table|delete table|flush)\b.*$", text, re.MULTILINE) == [
        "table inet namtech", "delete table inet namtech", "table inet namtech {"]
    assert "flush ruleset" not in text


# -- the role's tasks ------------------------------------------------------------------------------------------

PREFLIGHT_FAILURES = {
    "box-without-clients": (
        {"firewall_loadbalancer_group": "none"},
        "box-without-clients has no load balancer in front of it (group none is empty), so only monitoring could "
        "reach its engine: set firewall_engine_extra_sources to the clients' networks (an AI Box), or add the load "
        "balancers to the inventory"),
    "host-name-address": (
        {"firewall_monitoring_group": "named"},
        "nftables needs addresses, and the ansible_host of mon2 (groups loadbalancers and named) is not an IP "
        "address: set it to the host's address"),
    "bad-source": (
        {"firewall_extra_allowed_sources": ["10.0.0.0/24", "bastion.example.com"]},
        "firewall_extra_allowed_sources, firewall_engine_extra_sources and firewall_ssh_sources take IPv4 or IPv6 "
        "addresses or networks (10.0.0.0/24), not bastion.example.com"),
    "no-engine-port": (
        {"ai_engine": "vllm", "vllm_models": []},
        "firewall_engine_ports must list the engine's ports (got []: for vLLM every vllm_models item has a port), "
        "firewall_exporter_ports and firewall_ssh_port must be port numbers (got [9100, 9778, 9779] and 22), "
        "firewall_deny_action reject or drop (got reject) and firewall_confirm_timeout at least 30 seconds (got 120)"),
}


def test_preflight_refuses_what_would_not_work(tmp_path):
    groups = CLUSTER | {"named": {"mon2": "mon2.example.com"}}
    targets = {name: yaml.safe_dump(role_vars) for name, (role_vars, _message) in PREFLIGHT_FAILURES.items()}
    targets["restricted-ssh"] = yaml.safe_dump({"firewall_ssh_sources": ["192.0.2.0/24"]})
    finished = run_role_tasks(tmp_path, "firewall", ["preflight.yml"], groups, targets)
    messages = failure_messages(finished)
    assert messages == {name: message for name, (_role_vars, message) in PREFLIGHT_FAILURES.items()}, finished.stdout


@needs_netns
def test_the_tasks_load_the_rules_keep_them_and_leave_other_tables_alone(tmp_path):
    """preflight.yml and configure.yml in a private network namespace: a first run loads and keeps the rules, a second
    changes nothing, a third with another source replaces the table; another tool's table stays through all three."""
    (tmp_path / "other.nft").write_text("table inet othertool {\n  chain input {\n"
                                        "    type filter hook input priority 10; policy accept;\n"
                                        "    tcp dport 5432 drop\n  }\n}\n")
    settings = {"_firewall_ruleset_path": str(tmp_path / "etc" / "firewall.nft"),
                "_firewall_candidate_path": str(tmp_path / "etc" / "firewall.nft.candidate"),
                "firewall_confirm": False, "firewall_ssh_sources": ["192.0.2.0/24"]}
    steps = ["set -e", shlex.join([NFT, "-f", str(tmp_path / "other.nft")])]
    for index, extra in enumerate(({}, {}, {"firewall_extra_allowed_sources": ["10.9.0.0/16"]})):
        run_dir = tmp_path / ("run%d" % index)
        run_dir.mkdir()
        command = role_tasks_command(run_dir, "firewall", ["preflight.yml", "configure.yml"], CLUSTER, {"ai1": ""},
                                     extra_vars=settings | extra)
        steps.append("%s > %s" % (shlex.join(command), run_dir / "out"))
        steps.append("%s > %s" % (shlex.join([NFT, "-j", "list", "ruleset"]), run_dir / "ruleset.json"))
    (tmp_path / "scenario.sh").write_text("\n".join(steps) + "\n")
    finished = subprocess.run(["unshare", "--net", "sh", str(tmp_path / "scenario.sh")], check=False,
                              capture_output=True, text=True, timeout=600,
                              env=ANSIBLE_ENVIRONMENT | {"SSH_CLIENT": SSH_CLIENT})
    outputs = [(tmp_path / ("run%d" % index) / "out") for index in range(3)]
    outputs = [path.read_text() if path.exists() else "" for path in outputs]
    assert finished.returncode == 0, finished.stderr + "\n".join(outputs)
    rulesets = [json.loads((tmp_path / ("run%d" % index) / "ruleset.json").read_text())["nftables"]
                for index in range(3)]

    assert [re.search(r"ai1\s+: ok=\d+ +changed=(\d+) +unreachable=0 +failed=0", output)[1] != "0"
            for output in outputs] == [True, False, True], outputs
    assert sets_of(rulesets[0])["ssh_sources_v4"] == covered("192.0.2.0/24", CONTROLLER)
    assert sets_of(rulesets[1]) == sets_of(rulesets[0])
    assert sets_of(rulesets[2])["engine_sources_v4"] == covered("10.0.0.30", "10.0.0.31", "10.0.0.20", "10.9.0.0/16",
                                                                CONTROLLER)
    for ruleset in rulesets:
        assert [item["table"]["name"] for item in ruleset if "table" in item] == ["othertool", "namtech"]
        assert any(item["rule"]["table"] == "othertool" for item in ruleset if "rule" in item)
    kept = (tmp_path / "etc" / "firewall.nft").read_text()
    assert kept == (tmp_path / "etc" / "firewall.nft.candidate").read_text()
    assert "10.9.0.0/16" in kept
