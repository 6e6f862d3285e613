"""The prometheus role's alert and recording rules, rendered by Ansible with the role's defaults for an inventory:
they pass `promtool check rules`, every rule behaves as its `promtool test rules` cases in tests/unit/promtool/ say
(every alert fires there at least once, every recording rule is checked), the thresholds that depend on the tier
follow the inventory, and every alert carries the labels and annotations that routing, inhibition and the
runbooks rely on."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml
from role_templates import render_role_template

REPO = pathlib.Path(__file__).resolve().parents[2]
RULES_TEMPLATE = "rules/namtech.yml.j2"
PROMTOOL_TESTS = sorted((REPO / "tests" / "unit" / "promtool").glob("namtech_rules*_test.yml"))
MONITORING_DOC = REPO / "docs" / "monitoring.md"
PROMTOOL = shutil.which("promtool")

CLUSTER = {"ai_nodes": {"ai1": "10.0.0.10", "ai2": "10.0.0.11", "ai3": "10.0.0.12"},
           "loadbalancers": {"lb1": "10.0.0.30", "lb2": "10.0.0.31"}, "monitoring": {"mon1": "10.0.0.20"}}
BOX = {"ai_nodes": {"ai1": "10.0.0.10"}, "monitoring": {"ai1": "10.0.0.10"}}
PRO = {"ai_nodes": {"ai1": "10.0.0.10", "ai2": "10.0.0.11"}, "loadbalancers": {"lb1": "10.0.0.30"},
       "monitoring": {"mon1": "10.0.0.20"}}
BIG_CLUSTER = dict(CLUSTER, ai_nodes={"ai%d" % number: "10.0.0.%d" % (10 + number) for number in range(1, 7)})
# What the promtool test files were written for (their header says so).
TESTED_VARIABLES = {"prometheus_warm_aliases": ["assistant"]}

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus: make bootstrap)")


def render_rules(directory, groups=None, extra_vars=None):
    """The rules file's text as the role writes it for this inventory (the cluster's by default), rendered on its
    first monitoring host."""
    groups = CLUSTER if groups is None else groups
    (directory / "rules").mkdir(exist_ok=True)
    host = next(iter(groups["monitoring"]))
    path = render_role_template(directory, "prometheus", RULES_TEMPLATE, groups, host, extra_vars=extra_vars)
    return path.read_text(encoding="utf-8")


def rules(rules_text):
    return [rule for group in yaml.safe_load(rules_text)["groups"] for rule in group["rules"]]


def alerts(rules_text):
    return {rule["alert"]: rule for rule in rules(rules_text) if "alert" in rule}


def records(rules_text):
    return {rule["record"] for rule in rules(rules_text) if "record" in rule}


def promtool(*args, cwd):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, check=False, capture_output=True, text=True, timeout=300)


def promtool_cases():
    return [case for path in PROMTOOL_TESTS for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]]


@pytest.fixture(scope="module")
def default_rules(tmp_path_factory):
    """The rules rendered with the role's defaults for a cluster inventory."""
    return render_rules(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def tested_rules_dir(tmp_path_factory):
    """The rules the promtool test files were written for, next to copies of those files (they name namtech.yml)."""
    directory = tmp_path_factory.mktemp("tested")
    (directory / "namtech.yml").write_text(render_rules(directory, extra_vars=TESTED_VARIABLES), encoding="utf-8")
    for path in PROMTOOL_TESTS:
        shutil.copy(path, directory / path.name)
    return directory


@needs_promtool
def test_the_rules_pass_promtool_check(tmp_path, default_rules):
    (tmp_path / "namtech.yml").write_text(default_rules, encoding="utf-8")
    result = promtool("check", "rules", "namtech.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: %d rules found" % len(rules(default_rules)) in result.stdout


@needs_promtool
@pytest.mark.parametrize("test_file", [path.name for path in PROMTOOL_TESTS])
def test_every_rule_behaves_as_its_promtool_unit_tests_say(tested_rules_dir, test_file):
    result = promtool("test", "rules", test_file, cwd=tested_rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_thresholds_come_from_the_role_variables(tmp_path):
    rendered = render_rules(tmp_path, extra_vars={
        "prometheus_alert_disk_free_percent": 25, "prometheus_alert_node_down_for": "30s",
        "prometheus_runbook_url": "https://wiki.example/runbooks", "prometheus_alert_engine_down_for": "7m",
        "prometheus_capacity_concurrency_per_engine": 12, "prometheus_capacity_days": 5,
        "prometheus_alert_canary_tokens_per_second": 4})
    (tmp_path / "namtech.yml").write_text(rendered, encoding="utf-8")
    assert promtool("check", "rules", "namtech.yml", cwd=tmp_path).returncode == 0
    by_name = alerts(rendered)
    assert "< 25" in by_name["DiskAlmostFull"]["expr"]
    assert by_name["NodeDown"]["for"] == "30s"
    assert by_name["NodeDown"]["annotations"]["runbook"] == "https://wiki.example/runbooks#nodedown"
    assert by_name["LLMEngineDown"]["for"] == "7m"
    assert by_name["LLMCanaryTokensPerSecondLow"]["expr"].endswith("< 4")
    capacity = " ".join(by_name["CapacityAddNode"]["expr"].split())
    assert "min_over_time(namtech:tier_concurrency_per_engine:max1d[4d]) > 12," in capacity
    assert capacity.endswith("offset 4d)")


@needs_promtool
@pytest.mark.parametrize("groups, expected", [
    (BOX, {"engine_down_for": "1m", "digest_mismatch_for": "30m", "concurrency": 3.2}),
    (PRO, {"engine_down_for": "5m", "digest_mismatch_for": "30m", "concurrency": 1.6}),
    (CLUSTER, {"engine_down_for": "5m", "digest_mismatch_for": "30m", "concurrency": 2.13}),
    (BIG_CLUSTER, {"engine_down_for": "5m", "digest_mismatch_for": "60m", "concurrency": 2.67}),
], ids=["box", "pro", "cluster", "cluster of 6"])
def test_thresholds_that_depend_on_the_tier_follow_the_inventory(tmp_path, default_rules, groups, expected):
    rendered = default_rules if groups is CLUSTER else render_rules(tmp_path, groups)
    (tmp_path / "namtech.yml").write_text(rendered, encoding="utf-8")
    assert promtool("check", "rules", "namtech.yml", cwd=tmp_path).returncode == 0
    by_name = alerts(rendered)
    assert by_name["LLMEngineDown"]["for"] == expected["engine_down_for"]
    assert by_name["ModelDigestMismatch"]["for"] == expected["digest_mismatch_for"]
    thresholds = {rule["labels"]["signal"]: rule["expr"] for rule in rules(rendered)
                  if rule.get("record") == "namtech:capacity_threshold"}
    assert thresholds == {"concurrency": "vector(%s)" % expected["concurrency"], "queue": "vector(1)",
                          "ttft": "vector(3)"}


@needs_promtool
def test_warm_aliases_are_matched_literally_and_none_by_default(tmp_path, default_rules):
    assert "namtech_model_release_info{alias=~``}" in alerts(default_rules)["ModelNotLoaded"]["expr"]
    rendered = render_rules(tmp_path, extra_vars={"prometheus_warm_aliases": ["assistant", "llama3.2:3b"]})
    (tmp_path / "namtech.yml").write_text(rendered, encoding="utf-8")
    assert promtool("check", "rules", "namtech.yml", cwd=tmp_path).returncode == 0
    assert "{alias=~`assistant|llama3\\.2:3b`}" in alerts(rendered)["ModelNotLoaded"]["expr"]


def test_every_alert_has_a_severity_summary_description_and_runbook(default_rules):
    for name, rule in alerts(default_rules).items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, name
        assert rule["annotations"]["runbook"].endswith("#" + name.lower()), name


def test_every_alert_has_a_firing_unit_test(default_rules):
    firing = {case["alertname"] for test in promtool_cases() for case in test.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    assert firing == set(alerts(default_rules))


def test_every_recording_rule_has_a_unit_test(default_rules):
    tested = " ".join(case["expr"] for test in promtool_cases() for case in test.get("promql_expr_test", []))
    assert sorted(name for name in records(default_rules) if name not in re.findall(r"[\w:]+", tested)) == []


def test_every_alert_has_a_runbook_section_in_the_monitoring_guide(default_rules):
    headings = re.findall(r"^#+\s+(\S+)", MONITORING_DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    documented = {heading.lower() for heading in headings}
    assert [name for name in alerts(default_rules) if name.lower() not in documented] == []


def test_every_alert_the_alertmanager_inhibits_by_name_exists(default_rules):
    template = (REPO / "roles" / "alertmanager" / "templates" / "alertmanager.yml.j2").read_text(encoding="utf-8")
    named = {name for matcher in re.findall(r"alertname!?=~?\"([^\"]+)\"", template) for name in matcher.split("|")}
    assert named and named <= set(alerts(default_rules)), named - set(alerts(default_rules))
