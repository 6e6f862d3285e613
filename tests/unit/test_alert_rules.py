"""The prometheus role's alert rules: rendered with the role's defaults, they pass `promtool check rules`, every
alert fires (and stays quiet) as its `promtool test rules` case in tests/unit/promtool/ says, and every alert
carries the labels and annotations that routing, inhibition and the runbooks rely on."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import jinja2
import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "prometheus"
RULES_TEMPLATE = ROLE / "templates" / "rules" / "namtech.yml.j2"
RULES_TESTS = REPO / "tests" / "unit" / "promtool" / "namtech_rules_test.yml"
MONITORING_DOC = REPO / "docs" / "monitoring.md"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus: make bootstrap)")


def render_rules(**overrides):
    """The rules file as the role writes it: Ansible's variables are [[ ]], Prometheus's own templates {{ }}."""
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    variables.update(overrides, ansible_managed="Ansible managed")
    environment = jinja2.Environment(variable_start_string="[[", variable_end_string="]]",
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(RULES_TEMPLATE.read_text(encoding="utf-8")).render(variables)


def alerts(rules_text):
    return [rule for group in yaml.safe_load(rules_text)["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args, cwd):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, check=False, capture_output=True, text=True, timeout=120)


@pytest.fixture
def rules_dir(tmp_path):
    """The rendered rules next to a copy of the promtool test file, which names them namtech.yml."""
    (tmp_path / "namtech.yml").write_text(render_rules(), encoding="utf-8")
    shutil.copy(RULES_TESTS, tmp_path / RULES_TESTS.name)
    return tmp_path


@needs_promtool
def test_the_rules_pass_promtool_check(rules_dir):
    result = promtool("check", "rules", "namtech.yml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: %d rules found" % len(alerts(render_rules())) in result.stdout


@needs_promtool
def test_every_alert_behaves_as_its_promtool_unit_test_says(rules_dir):
    result = promtool("test", "rules", RULES_TESTS.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_thresholds_come_from_the_role_variables(tmp_path):
    rendered = render_rules(prometheus_alert_disk_free_percent=25, prometheus_alert_node_down_for="30s",
                            prometheus_runbook_url="https://wiki.example/runbooks")
    (tmp_path / "namtech.yml").write_text(rendered, encoding="utf-8")
    assert promtool("check", "rules", "namtech.yml", cwd=tmp_path).returncode == 0
    by_name = {rule["alert"]: rule for rule in alerts(rendered)}
    assert "< 25" in by_name["DiskAlmostFull"]["expr"]
    assert by_name["NodeDown"]["for"] == "30s"
    assert by_name["NodeDown"]["annotations"]["runbook"] == "https://wiki.example/runbooks#nodedown"


def test_every_alert_has_a_severity_summary_description_and_runbook():
    for rule in alerts(render_rules()):
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, rule["alert"]
        assert rule["annotations"]["runbook"].endswith("#" + rule["alert"].lower()), rule["alert"]


def test_every_alert_has_a_firing_unit_test():
    tested = yaml.safe_load(RULES_TESTS.read_text(encoding="utf-8"))["tests"]
    firing = {case["alertname"] for test in tested for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert firing == {rule["alert"] for rule in alerts(render_rules())}


def test_every_alert_has_a_runbook_section_in_the_monitoring_guide():
    headings = re.findall(r"^#+\s+(\S+)", MONITORING_DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    documented = {heading.lower() for heading in headings}
    missing = [rule["alert"] for rule in alerts(render_rules()) if rule["alert"].lower() not in documented]
    assert missing == []
