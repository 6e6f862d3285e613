"""Render one of a role's templates through Ansible itself, on this machine, for an inventory given as data:
the role's defaults and internal variables apply, as in a real run, and nothing is installed."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"

PLAYBOOK = """
- name: Render a role's template
  hosts: %(host)s
  connection: local
  gather_facts: false
  tasks:
    - name: The role's defaults
      ansible.builtin.include_vars: {file: "%(role)s/defaults/main.yml"}
    - name: The role's internal variables
      ansible.builtin.include_vars: {file: "%(role)s/vars/main.yml"}
    - name: Template
      ansible.builtin.template: {src: "%(role)s/templates/%(template)s", dest: "%(dest)s", mode: "0644"}
"""


def render_role_template(tmp_path, role, template, groups, host, *, extra_vars=None, all_vars=None):
    """The rendered file's path. groups: {group: {host: address}}; host: the one the template renders for."""
    variables = dict(all_vars or {}, ansible_python_interpreter=sys.executable)
    inventory = {"all": {"vars": variables, "children": {
        group: {"hosts": {name: {"ansible_host": address} for name, address in hosts.items()}}
        for group, hosts in groups.items()}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    dest = tmp_path / template.removesuffix(".j2")
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK % {"host": host, "role": REPO / "roles" / role, "template": template,
                                    "dest": dest}, encoding="utf-8")
    command = [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), str(playbook)]
    if extra_vars:
        command += ["--extra-vars", json.dumps(extra_vars)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert result.returncode == 0, result.stdout + result.stderr
    return dest
