"""Check that every role's meta/argument_specs.yml lists exactly the variables of its defaults/main.yml.

Public role variables are documented once, in the argument spec, and given a value once, in the
defaults; this keeps the two from drifting apart. Where the spec states a ``default`` it must equal the
value in defaults/main.yml (templated values excepted: the spec cannot evaluate them). A ``required`` option
needs no value there: its caller always passes it (an internal role that other roles include).

Usage: python tests/tools/check_argument_specs.py ROLES_DIR   (exit status 1 when a role disagrees)
"""

from __future__ import annotations

import pathlib
import sys

import yaml


def load_yaml_mapping(path):
    if not path.is_file():
        return None
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded if loaded is not None else {}


def spec_options(argument_specs):
    """Options of every entry point, by name (a role's tasks_from entry points share its defaults)."""
    options = {}
    for entry_point in (argument_specs.get("argument_specs") or {}).values():
        options.update((entry_point or {}).get("options") or {})
    return options


def is_templated(value):
    return isinstance(value, str) and "{{" in value


def role_problems(role_dir):
    """Sentences describing every disagreement between one role's defaults and its argument spec."""
    defaults_path = role_dir / "defaults" / "main.yml"
    specs_path = role_dir / "meta" / "argument_specs.yml"
    argument_specs = load_yaml_mapping(specs_path)
    if argument_specs is None:
        return ["%s is missing: every role documents its variables there" % specs_path]
    defaults = load_yaml_mapping(defaults_path) or {}
    options = spec_options(argument_specs)
    problems = ["%s is set in %s but not in %s" % (name, defaults_path, specs_path)
                for name in sorted(set(defaults) - set(options))]
    problems += ["%s is in %s but has no value in %s" % (name, specs_path, defaults_path)
                 for name in sorted(set(options) - set(defaults)) if not (options[name] or {}).get("required")]
    for name in sorted(set(options) & set(defaults)):
        spec = options[name] or {}
        if "default" in spec and not is_templated(defaults[name]) and spec["default"] != defaults[name]:
            problems.append("%s: %s says the default is %r but %s sets %r"
                            % (name, specs_path, spec["default"], defaults_path, defaults[name]))
    return problems


def check_roles(roles_dir):
    """``{role name: [problems]}`` for every role under ``roles_dir``."""
    roles_dir = pathlib.Path(roles_dir)
    if not roles_dir.is_dir():
        return {}
    return {role.name: role_problems(role) for role in sorted(roles_dir.iterdir()) if role.is_dir()}


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    results = check_roles(argv[1])
    for role, problems in results.items():
        print("%s: %s" % (role, "ok" if not problems else "%d problem(s)" % len(problems)))
        for problem in problems:
            print("  - " + problem)
    if not results:
        print("no roles under %s" % argv[1])
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
