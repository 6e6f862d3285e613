"""The AWX extensions: every survey in extensions/surveys is a survey AWX accepts, and every question feeds a
variable its playbook checks (a validate_argument_spec task, or the entry point of a role it runs) with a type,
choices and default that check accepts; the secrets credential type injects exactly the inventories' vault names."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = pathlib.Path(__file__).resolve().parents[2]
SURVEYS = REPO / "extensions" / "surveys"
CREDENTIAL_TYPE = REPO / "extensions" / "credential_types" / "namtech_internal_ai_secrets.json"
SURVEY_FILES = sorted(SURVEYS.glob("*.json"))
# The list: every operational playbook has a survey.
REQUIRED_SURVEYS = {"upgrade_model", "rollback_model", "backup", "restore", "scale_out", "scale_in", "tco_report"}
PREFIXES = {"upgrade_model": "rollout_", "rollback_model": "rollout_", "upgrade_engine": "rollout_",
            "scale_out": "scale_", "scale_in": "scale_", "tco_report": "tco_", "backup": "backup_",
            "restore": "restore_"}

# AWX's API (JobTemplateSurveySpec): the question types and the Python type of their defaults.
AWX_DEFAULT_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                     "integer": int, "float": (float, int)}
# Which survey question types can feed which argument spec types. Answers of text, password and choice questions
# are strings; a list is asked as comma-separated text (the playbook splits it) or as a multiselect; a boolean as
# the choices false and true.
COMPATIBLE = {
    "str": {"text", "textarea", "password", "multiplechoice"},
    "path": {"text"},
    "raw": {"text", "textarea", "integer", "float", "multiplechoice"},
    "int": {"integer"},
    "float": {"integer", "float"},
    "bool": {"multiplechoice"},
    "list": {"text", "multiselect"},
}
VALIDATE_ACTIONS = {"validate_argument_spec", "ansible.builtin.validate_argument_spec",
                    "ansible.legacy.validate_argument_spec"}
ROLE_ACTIONS = {"import_role", "include_role", "ansible.builtin.import_role", "ansible.builtin.include_role"}
IMPORT_PLAYBOOK = {"import_playbook", "ansible.builtin.import_playbook"}
SECRET_NAME = re.compile(r"(password|secret|token|(^|_)key($|_))")


def load_survey(path):
    return json.loads(path.read_text(encoding="utf-8"))


def choices_of(question):
    choices = question.get("choices", [])
    return choices.splitlines() if isinstance(choices, str) else list(choices)


# -- AWX's own checks, as its API applies them when a survey is saved -----------------------------------------

def awx_survey_errors(survey):
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(survey.get(field), kind):
            errors.append("%s must be a %s" % (field, kind.__name__))
    if errors:
        return errors
    if not survey["spec"]:
        errors.append("spec has no question")
    seen = set()
    for index, question in enumerate(survey["spec"]):
        errors.extend("question %d: %s" % (index, error) for error in awx_question_errors(question, seen))
    return errors


def awx_question_errors(question, seen):
    if not isinstance(question, dict):
        return ["not a JSON object"]
    errors = ["%s missing or not a %s" % (field, kind.__name__)
              for field, kind in (("type", str), ("question_name", str), ("variable", str), ("required", bool))
              if not isinstance(question.get(field), kind)]
    if errors:
        return errors
    if question["variable"] in seen:
        errors.append("variable %s appears twice" % question["variable"])
    seen.add(question["variable"])
    kind = question["type"]
    if kind not in AWX_DEFAULT_TYPES:
        return [*errors, "type %s is not one of %s" % (kind, ", ".join(AWX_DEFAULT_TYPES))]
    default = question.get("default", "")
    if default != "" and (not isinstance(default, AWX_DEFAULT_TYPES[kind]) or isinstance(default, bool)):
        errors.append("default %r is not a %s" % (default, kind))
    for limit in ("min", "max"):
        if question.get(limit) is not None and not isinstance(question[limit], int):
            errors.append("%s must be an integer" % limit)
    if kind in ("multiplechoice", "multiselect"):
        choices = choices_of(question)
        defaults = [line for line in str(default).splitlines() if line.strip()]
        if not choices:
            errors.append("a %s question needs choices" % kind)
        if kind == "multiplechoice" and len(defaults) > 1:
            errors.append("a multiplechoice question has one default")
        errors.extend("default %r is not a choice" % item for item in defaults if item not in choices)
    return errors


# -- what a playbook checks -------------------------------------------------------------------------------------

def role_entry_options(role, entry_point):
    path = REPO / "roles" / role.split(".")[-1] / "meta" / "argument_specs.yml"
    if not path.exists():
        return {}
    specs = yaml.safe_load(path.read_text(encoding="utf-8")).get("argument_specs") or {}
    return (specs.get(entry_point) or {}).get("options") or {}


def task_specs(tasks):
    """The argument specs a list of tasks validates: inline validate_argument_spec tasks and role entry points."""
    for task in tasks or []:
        for section in ("block", "rescue", "always"):
            yield from task_specs(task.get(section))
        for action in VALIDATE_ACTIONS & set(task):
            spec = (task[action] or {}).get("argument_spec")
            if isinstance(spec, dict):
                yield spec
        for action in ROLE_ACTIONS & set(task):
            arguments = task[action] or {}
            entry_point = pathlib.PurePath(arguments.get("tasks_from", "main")).stem
            yield role_entry_options(arguments["name"], entry_point)


def playbook_specs(path):
    """Variable name -> the option specs that check it, over every play of the playbook and those it imports."""
    found = {}
    for play in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
        imported = [play[key] for key in IMPORT_PLAYBOOK & set(play)]
        for name in imported:
            for variable, options in playbook_specs(path.parent / name).items():
                found.setdefault(variable, []).extend(options)
        specs = [role_entry_options(role if isinstance(role, str) else role["role"], "main")
                 for role in play.get("roles") or []]
        for section in ("pre_tasks", "tasks", "post_tasks"):
            specs.extend(task_specs(play.get(section)))
        for spec in specs:
            for variable, option in spec.items():
                found.setdefault(variable, []).append(option)
    return found


def as_the_playbook_sees_it(value, option):
    """A survey answer as the playbook uses it: a list given as text is split at its commas."""
    if option.get("type") == "list" and isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def check_errors(variable, option, value):
    """What the playbook's check says about ``value`` for ``variable`` (an empty list when it accepts it)."""
    spec = {variable: {key: item for key, item in option.items() if key != "description"}}
    result = ArgumentSpecValidator(spec).validate({variable: as_the_playbook_sees_it(value, option)},
                                                  validate_role_argument_spec=True)
    return result.error_messages


def inventory_variables():
    """Every variable the example inventories set (hosts.yml and group_vars)."""
    names = set()
    for path in (REPO / "inventories").glob("*/**/*.yml"):
        if path.parts[len(REPO.parts) + 1] == "lab":
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        names.update(data if path.name != "hosts.yml" else hosts_file_variables(data))
    return names


def hosts_file_variables(group):
    names = set((group.get("vars") or {}))
    for variables in (group.get("hosts") or {}).values():
        names.update(variables or {})
    for child in (group.get("children") or {}).values():
        names.update(hosts_file_variables(child or {}))
    if "all" in group:
        names.update(hosts_file_variables(group["all"]))
    return names


def questions():
    for path in SURVEY_FILES:
        for question in load_survey(path)["spec"]:
            yield pytest.param(path.stem, question, id="%s-%s" % (path.stem, question["variable"]))


@pytest.fixture(scope="module")
def specs():
    return {path.stem: playbook_specs(REPO / "playbooks" / (path.stem + ".yml")) for path in SURVEY_FILES
            if (REPO / "playbooks" / (path.stem + ".yml")).exists()}


# -- the tests --------------------------------------------------------------------------------------------------

def test_every_operational_playbook_has_a_survey():
    assert {path.stem for path in SURVEY_FILES} >= REQUIRED_SURVEYS


@pytest.mark.parametrize("path", SURVEY_FILES, ids=[path.stem for path in SURVEY_FILES])
def test_awx_accepts_the_survey(path):
    assert awx_survey_errors(load_survey(path)) == []


@pytest.mark.parametrize("path", SURVEY_FILES, ids=[path.stem for path in SURVEY_FILES])
def test_the_survey_belongs_to_a_playbook(path):
    assert (REPO / "playbooks" / (path.stem + ".yml")).is_file(), "no playbooks/%s.yml for %s" % (path.stem, path.name)


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_variables_are_flat_and_prefixed_by_their_playbook(playbook, question):
    assert re.fullmatch(r"[a-z][a-z0-9_]*", question["variable"])
    assert question["variable"].startswith(PREFIXES[playbook])


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_the_playbook_checks_the_variable(specs, playbook, question):
    assert playbook in specs, "playbooks/%s.yml does not exist" % playbook
    assert question["variable"] in specs[playbook], (
        "playbooks/%s.yml checks no variable %s: give it a validate_argument_spec task (or a role entry point) "
        "that lists its inputs" % (playbook, question["variable"]))


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_the_question_type_fits_the_check(specs, playbook, question):
    for option in specs.get(playbook, {}).get(question["variable"], []):
        kind = option.get("type", "str")
        assert question["type"] in COMPATIBLE[kind], "%s is %s, asked as %s" % (question["variable"], kind,
                                                                                question["type"])
        if kind == "bool":
            assert sorted(choices_of(question)) == ["false", "true"]


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_the_check_accepts_the_default_and_every_choice(specs, playbook, question):
    answers = choices_of(question) if question["type"] == "multiplechoice" else []
    if question["type"] == "multiselect":
        answers.append(choices_of(question))
    if question.get("default", "") != "" or not question["required"]:
        answers.append(question.get("default", ""))
    for option in specs.get(playbook, {}).get(question["variable"], []):
        option_choices = option.get("choices")
        for answer in answers:
            assert check_errors(question["variable"], option, answer) == [], answer
            if option_choices and question["type"] == "multiplechoice":
                assert answer in [str(choice) for choice in option_choices]


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_an_optional_question_left_blank_runs_as_if_not_asked(specs, playbook, question):
    """AWX sends an unanswered optional question's default, an empty string, or nothing, by version: all three must
    mean the playbook's own default."""
    if question["required"]:
        return
    for option in specs.get(playbook, {}).get(question["variable"], []):
        assert not option.get("required"), "%s is required by the playbook: make the question required" % (
            question["variable"])
        assert "default" in option, "%s has no literal default in the playbook's check" % question["variable"]
        assert as_the_playbook_sees_it(question.get("default", ""), option) == option["default"]
        assert as_the_playbook_sees_it("", option) == option["default"]


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_a_required_input_is_a_required_question(specs, playbook, question):
    if any(option.get("required") for option in specs.get(playbook, {}).get(question["variable"], [])):
        assert question["required"]


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_surveys_never_override_what_the_inventory_decides(playbook, question):
    assert question["variable"] not in inventory_variables()


@pytest.mark.parametrize(("playbook", "question"), list(questions()))
def test_surveys_ask_no_secret(playbook, question):
    assert question["type"] != "password"
    assert not SECRET_NAME.search(question["variable"]), "secrets come from credentials, not surveys"


@pytest.mark.parametrize(("playbook", "answer"), [("scale_in", "ai3"), ("scale_out", "ai2, ai3")])
def test_the_scale_playbooks_take_the_nodes_as_the_survey_sends_them(playbook, answer):
    """A survey sends the nodes as comma-separated text. The playbook's request check (its first play, on the
    controller) accepts it on the cluster inventory; --limit keeps every other play from running."""
    variable = "%s_nodes" % playbook
    command = [pathlib.Path(sys.executable).parent / "ansible-playbook", "-i", REPO / "inventories" / "cluster",
               "-i", "localhost,", "--limit", "localhost", REPO / "playbooks" / ("%s.yml" % playbook),
               "-e", json.dumps({variable: answer, "ansible_connection": "local",
                                 "ansible_python_interpreter": sys.executable})]
    finished = subprocess.run([str(arg) for arg in command], cwd=REPO, capture_output=True, text=True, timeout=300,
                              check=False, env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build"),
                                                    ANSIBLE_NOCOLOR="1"))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    grouped = re.findall(r"ok: \[localhost\] => \(item=(\S+)\)", finished.stdout)
    assert grouped == [node.strip() for node in answer.split(",")]


def test_the_credential_type_is_one_awx_accepts():
    credential_type = load_survey(CREDENTIAL_TYPE)
    assert credential_type["kind"] in ("cloud", "net")
    fields = credential_type["inputs"]["fields"]
    ids = [field["id"] for field in fields]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", field_id) for field_id in ids)
    assert all(field["type"] == "string" and field["secret"] is True and field["label"] for field in fields)
    assert set(credential_type["inputs"]["required"]) <= set(ids)
    assert set(credential_type["injectors"]) == {"extra_vars"}
    injected = credential_type["injectors"]["extra_vars"]
    assert injected == {"vault_" + field_id: "{{ %s }}" % field_id for field_id in ids}


def test_the_credential_type_injects_every_vault_name_of_the_inventories():
    names = set()
    for example in (REPO / "inventories").glob("*/group_vars/all/vault.yml.example"):
        names.update(yaml.safe_load(example.read_text(encoding="utf-8")))
    injected = set(load_survey(CREDENTIAL_TYPE)["injectors"]["extra_vars"])
    assert names
    assert names == injected
