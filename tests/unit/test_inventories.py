"""The example inventories inventories/box, inventories/pro and inventories/cluster: what ansible-inventory makes of
them, the tier defaults they derive from their groups (for both engines), the values they give the roles (checked
by the roles' own argument specs), their vault layout, their cost inputs, and what site.yml runs on them."""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.namtech.internal_ai.plugins.module_utils import tco

REPO = pathlib.Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "inventories"
BIN = pathlib.Path(sys.executable).parent
TIERS = ("box", "pro", "cluster")
GROUPS = ("ai_nodes", "loadbalancers", "monitoring", "storage", "staging")
EXPECTED_GROUPS = {
    "box": {"ai_nodes": ["ai1"], "loadbalancers": [], "monitoring": ["ai1"], "storage": [], "staging": []},
    "pro": {"ai_nodes": ["ai1", "ai2"], "loadbalancers": ["lb1"], "monitoring": ["mon1"], "storage": [],
            "staging": []},
    "cluster": {"ai_nodes": ["ai1", "ai2", "ai3"], "loadbalancers": ["lb1", "lb2"], "monitoring": ["mon1"],
                "storage": ["storage1"], "staging": []},
}
# What group_vars/all/00_tier.yml derives from those groups, with ai_engine ollama.
EXPECTED_TIER_DEFAULTS = {
    "box": {
        "ai_tier": "box", "ai_tier_ha": False, "ai_endpoint_url": "http://10.0.10.11:11434",
        "keepalived_virtual_ip": "", "rollout_serial": 1, "rollout_min_healthy": 0, "scale_min_nodes_in_rotation": 1,
        "prometheus_tier": "box", "prometheus_retention_time": "15d", "prometheus_retention_size": "5GB",
        "prometheus_alert_node_down_for": "2m", "prometheus_alert_disk_free_percent": 15,
        "ai_tier_backup_schedule": "*-*-* 02:30:00", "prometheus_alert_backup_max_age_hours": 26,
        "firewall_engine_extra_sources": ["10.0.0.0/16"],
    },
    "pro": {
        "ai_tier": "pro", "ai_tier_ha": False, "ai_endpoint_url": "http://10.0.10.21:11434",
        "keepalived_virtual_ip": "", "rollout_serial": 1, "rollout_min_healthy": 1, "scale_min_nodes_in_rotation": 1,
        "prometheus_tier": "pro", "prometheus_retention_time": "30d", "prometheus_retention_size": "",
        "prometheus_alert_node_down_for": "2m", "prometheus_alert_disk_free_percent": 10,
        "ai_tier_backup_schedule": "*-*-* 02:30:00", "prometheus_alert_backup_max_age_hours": 26,
        "firewall_engine_extra_sources": [],
    },
    "cluster": {
        "ai_tier": "cluster", "ai_tier_ha": True, "ai_endpoint_url": "http://10.0.10.100:11434",
        "keepalived_virtual_ip": "10.0.10.100", "rollout_serial": 1, "rollout_min_healthy": 2,
        "scale_min_nodes_in_rotation": 2, "prometheus_tier": "cluster", "prometheus_retention_time": "90d",
        "prometheus_retention_size": "", "prometheus_alert_node_down_for": "5m",
        "prometheus_alert_disk_free_percent": 10, "ai_tier_backup_schedule": "*-*-* 00/6:30:00",
        "prometheus_alert_backup_max_age_hours": 8, "firewall_engine_extra_sources": [],
    },
}
# The backup sources each host gets from its groups (names), with ai_engine ollama.
EXPECTED_BACKUP_SOURCES = {
    "box": {"ai1": ["engine-config", "monitoring-config", "models"]},
    "pro": {"ai1": ["engine-config", "models"], "ai2": ["engine-config"], "lb1": ["loadbalancer-config"],
            "mon1": ["monitoring-config"]},
    "cluster": {"ai1": ["engine-config", "models"], "ai2": ["engine-config"], "ai3": ["engine-config"],
                "lb1": ["loadbalancer-config"], "lb2": ["loadbalancer-config"], "mon1": ["monitoring-config"],
                "storage1": ["qdrant"]},
}
VLLM_ENDPOINTS = {"box": "http://10.0.10.11:8000", "pro": "http://10.0.10.21:8000", "cluster": "http://10.0.10.100:8000"}
# The roles site.yml applies, by the group whose hosts they run on; rollout is upgrade_model.yml's entry point.
ROLES_BY_GROUP = {
    "all": [("node_exporter", "main"), ("backup", "main")],
    "ai_nodes": [("ollama", "main"), ("vllm", "main"), ("rollout", "upgrade_preflight")],
    "loadbalancers": [("haproxy", "main"), ("keepalived", "main")],
    "monitoring": [("prometheus", "main"), ("alertmanager", "main"), ("grafana", "main")],
}
ROLE_PREFIXES = ("ollama", "vllm", "haproxy", "keepalived", "node_exporter", "prometheus", "alertmanager", "grafana",
                 "rollout", "backup")
# Files every tier's inventory has with the same content; hosts.yml and group_vars/all/10_site.yml make the tier.
SHARED_FILES = ("group_vars/all/00_tier.yml", "group_vars/ai_nodes/ollama.yml", "group_vars/ai_nodes/vllm.yml",
                "group_vars/ai_nodes/backup.yml", "group_vars/loadbalancers.yml", "group_vars/monitoring.yml",
                "group_vars/storage.yml")
VAULT_EXAMPLE = "group_vars/all/vault.yml.example"
VAULT_REFERENCE = re.compile(r"\bvault_[a-z0-9_]+")

PROBE_PLAY = {
    "name": "Probe the inventory",
    "hosts": "all",
    "gather_facts": False,
    "connection": "local",
    "tasks": [],
}


def ansible_env():
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_DEPRECATION_WARNINGS="0")


def run(command, *, check=True):
    finished = subprocess.run([str(arg) for arg in command], cwd=REPO, env=ansible_env(), capture_output=True,
                              text=True, timeout=300, check=False)
    if check:
        assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished


def inventory_args(*inventories):
    return [arg for inventory in inventories for arg in ("-i", inventory)]


def vault_args(tier="cluster"):
    """The vault example's placeholder values as extra vars: what a real vault.yml would provide."""
    return ["-e", "@%s" % (INVENTORIES / tier / VAULT_EXAMPLE)]


def list_inventory(*inventories):
    return json.loads(run([BIN / "ansible-inventory", *inventory_args(*inventories), "--list"]).stdout)


def role_options(role, entry_point):
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    return specs["argument_specs"][entry_point]["options"]


def checkable(options):
    """A role's options without what only documents them: descriptions, and defaults, which are the role's own
    values (a Jinja default of an int option would fail the type check outside the role)."""
    kept = {}
    for name, option in options.items():
        kept[name] = {key: value for key, value in option.items()
                      if key in ("type", "elements", "choices", "required", "no_log", "aliases")}
        if "options" in option:
            kept[name]["options"] = checkable(option["options"])
    return kept


def probe(tmp_path, inventories, variables, *, extra=(), vllm_variables=()):
    """Template ``variables`` on the first AI node (with the inventory's engine and with vllm), and run every role's
    argument spec over every host's values, as the roles themselves do when site.yml applies them."""
    tasks = []
    for group, roles in ROLES_BY_GROUP.items():
        for role, entry_point in roles:
            task = {
                "name": "%s accepts the inventory's values" % role,
                "ansible.builtin.validate_argument_spec": {"argument_spec": checkable(role_options(role, entry_point))},
            }
            if group != "all":
                task["when"] = "'%s' in group_names" % group
            tasks.append(task)
    outputs = {"inventory": tmp_path / "probe-inventory.json", "vllm": tmp_path / "probe-vllm.json"}
    for engine, names in (("inventory", variables), ("vllm", vllm_variables)):
        task = {
            "name": "Write the derived values (%s engine)" % engine,
            "ansible.builtin.copy": {
                "content": "{{ dict(_names | zip(_names | map('extract', vars))) | to_json }}",
                "dest": str(outputs[engine]),
                "mode": "0644",
            },
            "vars": {"_names": list(names)},
            "when": "inventory_hostname == groups['ai_nodes'][0]",
        }
        if engine == "vllm":
            task["vars"]["ai_engine"] = "vllm"
        tasks.append(task)
    tasks.append({
        "name": "Write every host's backup sources",
        "ansible.builtin.copy": {
            "content": "{{ dict(groups['all'] | zip(groups['all'] | map('extract', hostvars, 'backup_sources')"
                       " | map('map', attribute='name') | map('list'))) | to_json }}",
            "dest": str(tmp_path / "probe-backup.json"),
            "mode": "0644",
        },
        "when": "inventory_hostname == groups['ai_nodes'][0]",
    })
    outputs["backup"] = tmp_path / "probe-backup.json"
    playbook = tmp_path / "probe.yml"
    playbook.write_text(yaml.safe_dump([dict(PROBE_PLAY, tasks=tasks)], sort_keys=False), encoding="utf-8")
    finished = run([BIN / "ansible-playbook", *inventory_args(*inventories), playbook, *vault_args(),
                    "-e", json.dumps({"ansible_python_interpreter": sys.executable}), *extra], check=False)
    values = {engine: json.loads(path.read_text()) for engine, path in outputs.items() if path.exists()}
    return finished, values


def copy_inventory(tier, destination):
    shutil.copytree(INVENTORIES / tier, destination)
    return destination


def load_yaml(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def inventory_values(tier):
    """Every value the inventory's files give, as loaded YAML (comments and the vault example left out)."""
    root = INVENTORIES / tier
    return [load_yaml(path) for path in sorted(root.rglob("*.yml"))]


def strings_in(data):
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from strings_in(key)
            yield from strings_in(value)
    elif isinstance(data, list):
        for item in data:
            yield from strings_in(item)


@pytest.fixture(scope="module")
def listed():
    return {tier: list_inventory(INVENTORIES / tier) for tier in TIERS}


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    results = {}
    names = list(EXPECTED_TIER_DEFAULTS["box"])
    for tier in TIERS:
        results[tier] = probe(tmp_path_factory.mktemp(tier), [INVENTORIES / tier], names,
                              vllm_variables=["ai_endpoint_url", "ai_tier_engine_port"])
    return results


@pytest.mark.parametrize("tier", TIERS)
def test_ansible_inventory_lists_the_groups_of_the_tier(listed, tier):
    inventory = listed[tier]
    groups = {group: inventory.get(group, {}).get("hosts", []) for group in GROUPS}
    assert groups == EXPECTED_GROUPS[tier]
    assert set(GROUPS) <= set(inventory["all"]["children"])


@pytest.mark.parametrize("tier", TIERS)
def test_every_host_has_a_private_address(listed, tier):
    hostvars = listed[tier]["_meta"]["hostvars"]
    assert hostvars
    for name, variables in hostvars.items():
        assert ipaddress.ip_address(variables["ansible_host"]).is_private, name


@pytest.mark.parametrize("tier", TIERS)
def test_tier_defaults_follow_from_the_groups(probed, tier):
    finished, values = probed[tier]
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert values["inventory"] == EXPECTED_TIER_DEFAULTS[tier]


@pytest.mark.parametrize("tier", TIERS)
def test_the_vllm_variant_is_one_variable_and_moves_the_endpoint_to_the_vllm_port(probed, tier):
    finished, values = probed[tier]
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert values["vllm"] == {"ai_endpoint_url": VLLM_ENDPOINTS[tier], "ai_tier_engine_port": 8000}
    site = load_yaml(INVENTORIES / tier / "group_vars" / "all" / "10_site.yml")
    assert site["ai_engine"] == "ollama"
    assert load_yaml(INVENTORIES / tier / "group_vars" / "ai_nodes" / "vllm.yml")["vllm_models"][0]["port"] == 8000


@pytest.mark.parametrize("tier", TIERS)
def test_each_host_backs_up_what_its_groups_hold(probed, tier):
    finished, values = probed[tier]
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert values["backup"] == EXPECTED_BACKUP_SOURCES[tier]


@pytest.mark.parametrize("tier", TIERS)
def test_every_role_accepts_the_values_the_inventory_gives_it(probed, tier):
    finished = probed[tier][0]
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "Validation of arguments failed" not in finished.stdout


@pytest.mark.parametrize("tier", TIERS)
def test_role_variables_of_the_inventory_are_options_of_their_role(listed, tier):
    known = {name for role in ROLE_PREFIXES for entry in ("main", "upgrade_preflight")
             if (REPO / "roles" / role / "meta" / "argument_specs.yml").exists()
             for name in yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
             ["argument_specs"].get(entry, {}).get("options", {})}
    used = {name for variables in listed[tier]["_meta"]["hostvars"].values() for name in variables
            if name.startswith(tuple(prefix + "_" for prefix in ROLE_PREFIXES))}
    assert sorted(used - known) == []


@pytest.mark.parametrize("shared", SHARED_FILES)
def test_tiers_share_everything_but_their_hosts_and_site_settings(shared):
    contents = {tier: (INVENTORIES / tier / shared).read_text(encoding="utf-8") for tier in TIERS}
    assert contents["pro"] == contents["box"], shared
    assert contents["cluster"] == contents["box"], shared


@pytest.mark.parametrize("tier", TIERS)
def test_secrets_are_vault_references_listed_in_the_vault_example(listed, tier):
    referenced = {match for value in inventory_values(tier) for text in strings_in(value)
                  for match in VAULT_REFERENCE.findall(text)}
    example = load_yaml(INVENTORIES / tier / VAULT_EXAMPLE)
    assert sorted(referenced) == sorted(example)
    # The example is never read as inventory: none of its names reaches a host.
    hostvars = listed[tier]["_meta"]["hostvars"]
    assert not [name for variables in hostvars.values() for name in variables if name.startswith("vault_")]


@pytest.mark.parametrize("tier", TIERS)
def test_cost_inputs_make_a_planned_tier_tco_report_accepts(listed, tier):
    raw_hosts = tco.hosts_from_inventory_list(listed[tier])
    hosts, warnings = tco.parse_hosts(raw_hosts)
    assert warnings == []
    expected = {host for hosts_of_group in EXPECTED_GROUPS[tier].values() for host in hosts_of_group}
    assert {host.name for host in hosts} == expected
    assert tco.derive_tier(hosts) == tier


@pytest.mark.parametrize("tier", TIERS)
def test_site_playbook_runs_each_play_on_the_hosts_of_its_group(listed, tier):
    output = run([BIN / "ansible-playbook", "-i", INVENTORIES / tier, REPO / "playbooks" / "site.yml",
                  "--list-hosts", *vault_args()]).stdout
    plays = re.findall(r"pattern: \['([^']+)'\]\n\s+hosts \(\d+\):\n((?:\s{6}\S+\n?)*)", output)
    assert {play[0] for play in plays} >= {"ai_nodes", "loadbalancers", "all", "monitoring"}
    every_host = sorted({host for hosts in EXPECTED_GROUPS[tier].values() for host in hosts})
    for pattern, hosts in plays:
        expected = every_host if pattern == "all" else sorted(EXPECTED_GROUPS[tier][pattern])
        assert sorted(hosts.split()) == expected, pattern


def test_a_box_given_the_hosts_of_a_pro_derives_the_pro_defaults(tmp_path):
    inventory = copy_inventory("box", tmp_path / "grown")
    shutil.copy(INVENTORIES / "pro" / "hosts.yml", inventory / "hosts.yml")
    finished, values = probe(tmp_path, [inventory], list(EXPECTED_TIER_DEFAULTS["pro"]))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert values["inventory"] == EXPECTED_TIER_DEFAULTS["pro"]


def test_a_bigger_cluster_takes_bigger_batches_and_keeps_a_higher_floor(tmp_path):
    inventory = copy_inventory("cluster", tmp_path / "bigger")
    hosts = load_yaml(inventory / "hosts.yml")
    for index in range(4, 10):
        hosts["all"]["children"]["ai_nodes"]["hosts"]["ai%d" % index] = {"ansible_host": "10.0.10.%d" % (10 + index)}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    names = ["rollout_serial", "rollout_min_healthy", "ai_tier", "prometheus_alert_node_down_for"]
    finished, values = probe(tmp_path, [inventory], names)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert values["inventory"] == {"rollout_serial": 3, "rollout_min_healthy": 6, "ai_tier": "cluster",
                                   "prometheus_alert_node_down_for": "5m"}


def test_two_load_balancers_without_a_virtual_ip_fail_at_the_first_use(tmp_path):
    inventory = copy_inventory("cluster", tmp_path / "no-vip")
    site = inventory / "group_vars" / "all" / "10_site.yml"
    site.write_text(re.sub(r"(?m)^ai_virtual_ip: .*$", "", site.read_text(encoding="utf-8")), encoding="utf-8")
    finished, values = probe(tmp_path, [inventory], ["ai_endpoint_url"])
    assert finished.returncode != 0
    assert "'ai_virtual_ip' is undefined" in finished.stdout
    assert values == {}


def test_another_inventory_layered_on_top_moves_the_tier_to_other_machines(tmp_path):
    """How a tier inventory is tried on other hosts (the lab): a second inventory with the same host names gives
    their addresses and its own settings; the derived defaults follow it."""
    other = tmp_path / "elsewhere"
    (other / "group_vars").mkdir(parents=True)
    names = {name for hosts in EXPECTED_GROUPS["cluster"].values() for name in hosts}
    hosts = {name: {"ansible_host": "192.168.50.%d" % index} for index, name in enumerate(sorted(names), start=10)}
    (other / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}), encoding="utf-8")
    (other / "group_vars" / "all.yml").write_text("ai_virtual_ip: 192.168.50.100\n", encoding="utf-8")
    finished, values = probe(tmp_path, [INVENTORIES / "cluster", other],
                             ["ansible_host", "ai_endpoint_url", "keepalived_virtual_ip", "ai_tier"])
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert values["inventory"] == {"ansible_host": "192.168.50.10", "ai_endpoint_url": "http://192.168.50.100:11434",
                                   "keepalived_virtual_ip": "192.168.50.100", "ai_tier": "cluster"}


@pytest.mark.parametrize("tier", TIERS)
def test_every_ai_variable_of_the_inventory_is_documented_in_the_tiers_guide(listed, tier):
    guide = (REPO / "docs" / "tiers.md").read_text(encoding="utf-8")
    names = {name for variables in listed[tier]["_meta"]["hostvars"].values() for name in variables
             if name.startswith("ai_")}
    assert sorted(name for name in names if "`%s`" % name not in guide) == []
