"""The llm_exporter and llm_meter roles' templates, rendered by Ansible for several kinds of node in one run: the
configurations the daemons accept, the API key file, the hardened units (checked by `systemd-analyze verify` where
it is installed), and argument specs equal to the defaults."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
ADDRESS = "10.0.0.5"
TEMPLATES = {
    "llm_exporter": ("namtech-llm-exporter.service.j2", "llm_exporter.json.j2", "llm_exporter.env.j2"),
    "llm_meter": ("namtech-llm-meter.service.j2", "llm_meter.json.j2"),
}
# One host per kind of node; its variables are loaded after the roles' defaults, as an inventory's would win.
NODES = {
    "ollama": {},
    "moved": {"ollama_listen_address": "127.0.0.1", "ollama_port": 11435, "llm_meter_enabled": True,
              "ollama_model_aliases": {"assistant": "lab-chat:v1"},
              "ollama_models": [{"name": "lab-chat:v1"}, {"name": "lab-embed:v1"}],
              "llm_meter_upstream_host_header": "127.0.0.1:11435"},
    "vllm": {"ai_engine": "vllm", "vllm_models": [{"name": "assistant", "port": 8001}],
             "vllm_api_key": 'se"cr\\et', "llm_exporter_canary_keep_alive": "10m",
             "_llm_exporter_nvidia_smi_stat": {"stat": {"exists": True}}, "llm_meter_port": 80},
    # The meter switched on, but Ollama left where it was.
    "unmoved": {"ollama_listen_address": ADDRESS, "ollama_port": 11434, "llm_meter_enabled": True},
}
# What the roles' preflight reads from the facts.
FACTS = {"ansible_system": "Linux", "ansible_service_mgr": "systemd", "ansible_os_family": "Debian"}
PLAYBOOK = """
- name: Render the roles' templates
  hosts: all
  connection: local
  gather_facts: false
  # The roles' defaults and internal variables, then the node's own (a later file wins).
  vars_files: %(variables)s
  tasks:
    - name: Both roles' preflight checks
      block:
        - name: Preflight of llm_exporter
          ansible.builtin.include_tasks: "%(roles)s/llm_exporter/tasks/preflight.yml"
        - name: Preflight of llm_meter
          ansible.builtin.include_tasks: "%(roles)s/llm_meter/tasks/preflight.yml"
      rescue:
        - name: Keep what failed
          ansible.builtin.set_fact:
            _preflight: "{{ ansible_failed_result.msg }}"
    # The template lookup renders like the template module, without running a module per file.
    - name: Render each template for each node
      ansible.builtin.set_fact:
        _rendered: "{{ _rendered | default({'preflight': _preflight | default('')})
                       | combine({item.1: lookup('ansible.builtin.template',
                                                 '%(roles)s/' ~ item.0 ~ '/templates/' ~ item.1)}) }}"
      loop: %(templates)s
    - name: Write every node's files at once
      ansible.builtin.copy:
        content: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, '_rendered')))
                     | to_json }}"
        dest: "%(out)s/rendered.json"
        mode: "0644"
      delegate_to: localhost
      run_once: true
"""


def load_script(role, name):
    spec = importlib.util.spec_from_file_location(name, REPO / "roles" / role / "files" / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


exporter_module = load_script("llm_exporter", "namtech_llm_exporter")
meter_module = load_script("llm_meter", "namtech_llm_meter")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{node: directory of its rendered files}: one ansible-playbook run for every node and template."""
    work = tmp_path_factory.mktemp("render")
    variables = [str(REPO / "roles" / role / kind / "main.yml") for role in TEMPLATES for kind in ("defaults", "vars")]
    for node, own in NODES.items():
        (work / ("%s.yml" % node)).write_text(yaml.safe_dump(own), encoding="utf-8")
        (work / node).mkdir()
    inventory = {"all": {"hosts": {node: {"ansible_host": ADDRESS} for node in NODES},
                         "vars": dict(FACTS, ansible_python_interpreter=sys.executable)}}
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    templates = [[role, name] for role, names in TEMPLATES.items() for name in names]
    playbook = PLAYBOOK % {"variables": json.dumps([*variables, str(work) + "/{{ inventory_hostname }}.yml"]),
                           "roles": REPO / "roles", "out": work, "templates": json.dumps(templates)}
    (work / "render.yml").write_text(playbook, encoding="utf-8")
    result = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(work / "hosts.yml"), str(work / "render.yml")],
                            check=False, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert result.returncode == 0, result.stdout + result.stderr
    for node, files in json.loads((work / "rendered.json").read_text(encoding="utf-8")).items():
        for template, text in files.items():
            (work / node / template.removesuffix(".j2")).write_text(text, encoding="utf-8")
    return {node: work / node for node in NODES}


def test_preflight_passes_for_good_nodes_and_refuses_a_meter_where_ollama_still_listens(rendered):
    for node in ("ollama", "moved", "vllm"):
        assert (rendered[node] / "preflight").read_text() == "", node
    assert (rendered["unmoved"] / "preflight").read_text() == (
        "Ollama listens on 10.0.0.5:11434, where the meter must listen. Move it behind the meter in the inventory: "
        "ollama_listen_address: 127.0.0.1 and ollama_port: 11435 (llm_meter_upstream_url http://127.0.0.1:11435), "
        "then run the ollama role before this one.")


def exporter_config(rendered, node):
    return exporter_module.load_config(str(rendered[node] / "llm_exporter.json"), environ={})


def meter_config(rendered, node):
    return meter_module.load_config(str(rendered[node] / "llm_meter.json"))


def unit_settings(path):
    settings = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, _sep, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


# -- llm_exporter ----------------------------------------------------------------------------------------------

def test_the_exporter_watches_ollama_on_the_node_by_default(rendered):
    config = exporter_config(rendered, "ollama")
    assert (config.engine, config.url, config.listen_address, config.listen_port) == (
        "ollama", "http://10.0.0.5:11434", ADDRESS, 9778)
    assert (config.canary_enabled, config.canary_model, config.canary_interval_seconds, config.canary_keep_alive) == (
        True, "assistant", 30, "")
    assert (config.release_record_path, config.timeout_seconds) == ("/var/lib/namtech_ai/releases.json", 3)
    assert "NAMTECH_LLM_API_KEY" not in (rendered["ollama"] / "llm_exporter.env").read_text()


def test_the_exporter_follows_ollama_behind_the_meter(rendered):
    assert exporter_config(rendered, "moved").url == "http://127.0.0.1:11435"


def test_the_exporter_on_vllm_nodes_uses_the_first_server_and_its_key(rendered):
    config = exporter_config(rendered, "vllm")
    assert (config.engine, config.url, config.canary_keep_alive) == ("vllm", "http://10.0.0.5:8001", "10m")
    env = (rendered["vllm"] / "llm_exporter.env").read_text()
    assert 'NAMTECH_LLM_API_KEY="se\\"cr\\\\et"\n' in env
    assert "se\"cr" not in (rendered["vllm"] / "llm_exporter.json").read_text()


def test_the_exporter_unit_is_sandboxed_and_keeps_devices_only_for_gpus(rendered):
    plain = unit_settings(rendered["ollama"] / "namtech-llm-exporter.service")
    assert plain["User"] == ["llm-exporter"] and plain["PrivateDevices"] == ["yes"]
    assert plain["MemoryDenyWriteExecute"] == ["yes"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""), ("MemoryMax", "128M"),
                       ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"), ("RestartPreventExitStatus", "78"),
                       ("EnvironmentFile", "-/etc/namtech/llm_exporter.env")):
        assert plain[key] == [value], key
    assert plain["ExecStart"] == ["/usr/bin/python3 -I /usr/local/lib/namtech/namtech_llm_exporter.py --config "
                                  "/etc/namtech/llm_exporter.json"]
    gpu = unit_settings(rendered["vllm"] / "namtech-llm-exporter.service")
    assert gpu["PrivateDevices"] == ["no"] and "MemoryDenyWriteExecute" not in gpu


# -- llm_meter -------------------------------------------------------------------------------------------------

def test_the_meter_takes_the_engines_place_and_counts_the_inventorys_models(rendered):
    config = meter_config(rendered, "moved")
    assert (config.listen_address, config.listen_port, config.upstream_url, config.metrics_host,
            config.metrics_port) == (ADDRESS, 11434, "http://127.0.0.1:11435", ADDRESS, 9779)
    assert config.models == ("assistant", "lab-chat:v1", "lab-embed:v1")
    assert config.upstream_host_header == "127.0.0.1:11435"
    assert meter_config(rendered, "ollama").models == ()


def test_the_meter_unit_is_sandboxed_and_binds_low_ports_only_with_the_capability(rendered):
    plain = unit_settings(rendered["moved"] / "namtech-llm-meter.service")
    assert plain["User"] == ["llm-meter"] and plain["PrivateDevices"] == ["yes"]
    assert plain["CapabilityBoundingSet"] == [""] and plain["AmbientCapabilities"] == [""]
    assert plain["MemoryMax"] == ["256M"] and plain["MemoryDenyWriteExecute"] == ["yes"]
    low = unit_settings(rendered["vllm"] / "namtech-llm-meter.service")
    assert low["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert low["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


# -- both ------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (systemd)")
@pytest.mark.parametrize(("node", "unit"), [("ollama", "namtech-llm-exporter.service"),
                                            ("vllm", "namtech-llm-exporter.service"),
                                            ("moved", "namtech-llm-meter.service"),
                                            ("vllm", "namtech-llm-meter.service")])
def test_systemd_accepts_the_units(rendered, tmp_path, node, unit):
    shutil.copy(rendered[node] / unit, tmp_path / unit)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], cwd=tmp_path, check=False,
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, SYSTEMD_UNIT_PATH="%s:" % tmp_path))
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_the_argument_specs_list_exactly_the_defaults():
    spec = importlib.util.spec_from_file_location("check_argument_specs",
                                                  REPO / "tests" / "tools" / "check_argument_specs.py")
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    for role in TEMPLATES:
        assert checker.role_problems(REPO / "roles" / role) == []
