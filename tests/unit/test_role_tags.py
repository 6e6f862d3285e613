"""A role run with one of its tags (``--tags configure``) must not need a variable that only the files of another
tag register: CI's monitoring run with ``--tags configure`` failed on the firewall's ``_firewall_unit``."""

import re
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
TASK_FILE = re.compile(r"(?:import|include)_tasks:\s*(?:file:\s*)?([\w./-]+\.yml)")
REGISTER = re.compile(r"^\s*register:\s*(\w+)\s*$", re.MULTILINE)


def tagged_task_files(role):
    """{task file: its tags} for the files the role's main.yml imports with tags, each with the files it pulls in."""
    tasks = ROLES / role / "tasks"
    found = {}
    for entry in yaml.safe_load((tasks / "main.yml").read_text()) or []:
        match = TASK_FILE.search(yaml.safe_dump(entry))
        if match and entry.get("tags"):
            for path in with_included(tasks, match.group(1)):
                found.setdefault(path, set()).update(entry["tags"])
    return found


def with_included(tasks, name, seen=None):
    seen = seen if seen is not None else set()
    path = tasks / name
    if path in seen or not path.is_file():
        return seen
    seen.add(path)
    for included in TASK_FILE.findall(path.read_text()):
        with_included(tasks, included, seen)
    return seen


def unguarded_uses(text, name):
    """Lines using ``name`` without ``| default`` or ``is defined`` on the same line."""
    guard = re.compile(r"\b%s\b\s*(\|\s*default\b|is\s+defined\b)|\b%s\s+is\s+not\s+defined\b" % (name, name))
    return [line.strip() for line in text.splitlines()
            if re.search(r"\b%s\b" % name, line) and not REGISTER.match(line) and not guard.search(line)]


def roles_with_tagged_files():
    return sorted(path.parent.parent.name for path in ROLES.glob("*/tasks/main.yml") if tagged_task_files(
        path.parent.parent.name))


@pytest.mark.parametrize("role", roles_with_tagged_files())
def test_each_tag_runs_without_what_another_tag_registers(role):
    files = tagged_task_files(role)
    problems = []
    for registering, registering_tags in files.items():
        for name in REGISTER.findall(registering.read_text()):
            for user, user_tags in files.items():
                if user_tags - registering_tags - {role} and name not in REGISTER.findall(user.read_text()):
                    problems += ["%s uses %s (registered in %s, tags %s) under tags %s: %s" % (
                        user.name, name, registering.name, sorted(registering_tags),
                        sorted(user_tags - registering_tags), line) for line in unguarded_uses(user.read_text(), name)]
    assert not problems, "\n".join(problems)
