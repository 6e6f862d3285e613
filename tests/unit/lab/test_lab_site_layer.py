"""lab.site_layer over each example inventory: the example's hosts and groups at the lab's addresses, every secret of
its vault given, the lab's models behind the example's names (what test_tiers deploys)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lab import site_layer
from lab.topology import load_topology

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
TIERS = ("box", "pro", "cluster")


@pytest.fixture(scope="module")
def layered(artifact_tree, tmp_path_factory):
    """{tier: (topology, ansible-inventory --list of the example with the layer)}."""
    listed = {}
    for tier in TIERS:
        topology = load_topology(tier)
        layer = tmp_path_factory.mktemp(tier)
        for relative, variables in site_layer.layer_files(topology, tree=artifact_tree).items():
            (layer / relative).parent.mkdir(parents=True, exist_ok=True)
            (layer / relative).write_text(yaml.safe_dump(variables))
        done = subprocess.run([ANSIBLE_INVENTORY, "-i", REPO / "inventories" / tier, "-i", layer, "--list"],
                              capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
                              env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
        assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
        listed[tier] = (topology, json.loads(done.stdout))
    return listed


def example_groups(tier):
    children = yaml.safe_load((REPO / "inventories" / tier / "hosts.yml").read_text())["all"]["children"]
    return {group: sorted(entry.get("hosts") or {}) for group, entry in children.items()}


@pytest.mark.parametrize("tier", TIERS)
def test_the_layer_keeps_the_examples_hosts_and_groups(layered, tier):
    listed = layered[tier][1]
    for group, hosts in example_groups(tier).items():
        assert sorted(listed.get(group, {}).get("hosts", [])) == hosts, group
    assert "artifacts1" not in listed["_meta"]["hostvars"], "a lab host the example lacks joined the inventory"


@pytest.mark.parametrize("tier", TIERS)
def test_every_host_is_at_its_lab_address(layered, tier):
    topology, listed = layered[tier]
    for host, variables in listed["_meta"]["hostvars"].items():
        assert variables["ansible_host"] == topology.host(host).address, host


@pytest.mark.parametrize("tier", TIERS)
def test_the_layer_gives_every_secret_of_the_examples_vault(layered, tier):
    names = yaml.safe_load((REPO / "inventories" / tier / "group_vars" / "all" / "vault.yml.example").read_text())
    variables = next(iter(layered[tier][1]["_meta"]["hostvars"].values()))
    assert sorted(name for name in names if name not in variables) == []


@pytest.mark.parametrize("tier", TIERS)
def test_the_examples_names_serve_lab_models(layered, tier):
    topology, listed = layered[tier]
    node = listed["_meta"]["hostvars"][topology.group("ai_nodes")[0].name]
    assert node["ollama_model_aliases"] == {"assistant": "lab-chat:v1", "embeddings": "lab-embed:v1"}
    assert [model["name"] for model in node["ollama_models"]] == ["lab-chat:v1", "lab-embed:v1"]
    assert all(len(model["digest"]) == 64 for model in node["ollama_models"])
    assert node.get("ai_virtual_ip") == topology.vip if tier == "cluster" else "ai_virtual_ip" not in node
