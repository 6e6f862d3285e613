"""The argument-spec check that `make test` runs over every role: it must catch each kind of drift."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHECKER = REPO / "tests" / "tools" / "check_argument_specs.py"


def make_role(roles_dir, name, defaults, options):
    role = roles_dir / name
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    if options is not None:
        specs = {"argument_specs": {"main": {"short_description": name, "options": options}}}
        (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs))


def run_checker(roles_dir):
    return subprocess.run([sys.executable, str(CHECKER), str(roles_dir)], check=False, capture_output=True, text=True,
                          timeout=60)


def test_a_role_whose_spec_matches_its_defaults_passes(tmp_path):
    make_role(tmp_path, "good", {"good_port": 80, "good_url": "http://{{ ansible_host }}"},
              {"good_port": {"type": "int", "default": 80}, "good_url": {"type": "str", "default": "x"},
               "good_caller_passes_it": {"type": "str", "required": True}})
    finished = run_checker(tmp_path)
    assert finished.returncode == 0, finished.stdout
    assert finished.stdout == "good: ok\n"


def test_every_kind_of_drift_is_reported(tmp_path):
    make_role(tmp_path, "drift", {"drift_only_default": 1, "drift_port": 80},
              {"drift_port": {"type": "int", "default": 8080}, "drift_only_spec": {"type": "str"}})
    make_role(tmp_path, "nospec", {"nospec_x": 1}, None)
    finished = run_checker(tmp_path)
    assert finished.returncode == 1
    lines = finished.stdout.splitlines()
    defaults = tmp_path / "drift" / "defaults" / "main.yml"
    specs = tmp_path / "drift" / "meta" / "argument_specs.yml"
    assert lines[0] == "drift: 3 problem(s)"
    assert "  - drift_only_default is set in %s but not in %s" % (defaults, specs) in lines
    assert "  - drift_only_spec is in %s but has no value in %s" % (specs, defaults) in lines
    assert "  - drift_port: %s says the default is 8080 but %s sets 80" % (specs, defaults) in lines
    assert "nospec: 1 problem(s)" in lines


def test_the_collections_roles_pass():
    finished = run_checker(REPO / "roles")
    assert finished.returncode == 0, finished.stdout
