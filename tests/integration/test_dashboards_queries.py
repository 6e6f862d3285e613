"""Every PromQL expression of the collection's Grafana dashboards and of the rules Prometheus loaded, asked of the
lab's live Prometheus (Grafana itself cannot run here): the dashboards show data and the rules read series that
exist, so a metric renamed by an exporter or a label that never matches is caught.

On the deployed cluster (site.yml, Ollama), with a backup sample written to the textfile collector and a few
requests through the load balancers:

- every dashboard expression (tier .*, node the first AI node, $__rate_interval 5m) returns at least one series;
- every recording rule returns at least one series;
- every alert expression evaluates (a healthy lab fires none, so its result may be empty);
- every series selector of all of them matches at least one series;

unless the expression or selector reads something in ALLOWED_EMPTY, the documented deliberate empties. An entry
tied to a scrape job applies only while the lab has no target of that job (a vLLM lab must show vLLM's series).
"""

from __future__ import annotations

import pathlib
import re
import time

import pytest
from lab import monitoring
from lab.inventory import ai_endpoint_url
from lab.traffic import Traffic
from unit.test_grafana_dashboards import (
    GRAFANA_VARIABLES,
    dashboard_expressions,
    load_dashboards,
    selectors,
    substitute_variables,
)

pytestmark = [pytest.mark.topology("cluster"), pytest.mark.engine("ollama"), pytest.mark.timeout(1200)]

REPO = pathlib.Path(__file__).resolve().parents[2]
# (pattern searched in a selector, why it may match nothing here, the scrape job whose absence the reason depends on)
ALLOWED_EMPTY = [
    (r'^vllm:|__name__=~"vllm:|job="vllm"', "the lab runs Ollama: vLLM's own series exist with LAB_ENGINE=vllm",
     "vllm"),
    (r"^namtech_llm_(prompt_tokens|generated_tokens|requests|request_duration_seconds|request_ttft_seconds)_"
     r"|^namtech_llm_in_flight_requests", "llm_meter runs only on AI nodes whose llm_meter_enabled is true",
     "llm_meter"),
    (r"^namtech_gpu_", "the lab's hosts have no GPU: llm_exporter exports GPU series only where nvidia-smi is", None),
    (r"^node_hwmon_temp_celsius|^node_thermal_zone_temp", "containers may see no temperature sensor", None),
    (r"^ALERTS\b", "ALERTS has series only while an alert is pending or firing", None),
    (r"^namtech_model_release_candidate_info", "a candidate exists only between staging and promoting it", None),
    (r'alias=~(""|``)', "prometheus_warm_aliases is empty: ModelNotLoaded matches no alias", None),
]
SUBSTITUTE = dict(GRAFANA_VARIABLES, __rate_interval="5m", tier=".*")
BACKUP_FILE = "/var/lib/prometheus/node-exporter/lab_dashboards_backup.prom"
DEADLINE_SECONDS = 420


def query(prometheus, expression):
    """The query's result list; fails the test with Prometheus's message when it refuses the expression."""
    answer = monitoring.get(prometheus + "/api/v1/query", params={"query": expression}, timeout=30).json()
    if answer.get("status") != "success":
        pytest.fail("Prometheus refused %r: %s" % (expression, answer.get("error")))
    return answer["data"]["result"]


def lab_jobs(prometheus):
    targets = monitoring.get(prometheus + "/api/v1/targets", timeout=30).json()["data"]["activeTargets"]
    return {target["labels"]["job"] for target in targets}


def allowances(jobs):
    """(pattern, reason) of the ALLOWED_EMPTY entries that apply to this lab."""
    return [(pattern, reason) for pattern, reason, job in ALLOWED_EMPTY if job is None or job not in jobs]


def allowed_reason(expression_selectors, applying):
    for selector in expression_selectors:
        for pattern, reason in applying:
            if re.search(pattern, selector):
                return "%s: %s" % (selector, reason)
    return None


def loaded_rules(prometheus):
    groups = monitoring.get(prometheus + "/api/v1/rules", timeout=30).json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def write_backup_sample(lab, host):
    """A backup set's four samples, as the backup jobs write them (namtech_backup.prom's format)."""
    now = int(time.time())
    lines = ["namtech_backup_last_success_timestamp_seconds{backup=\"lab-dashboards\"} %d" % now,
             "namtech_backup_last_failure_timestamp_seconds{backup=\"lab-dashboards\"} 0",
             "namtech_backup_duration_seconds{backup=\"lab-dashboards\"} 12.5",
             "namtech_backup_size_bytes{backup=\"lab-dashboards\"} 1048576"]
    lab.ssh(host, "cat > %s.tmp && mv %s.tmp %s" % (BACKUP_FILE, BACKUP_FILE, BACKUP_FILE),
            input_text="\n".join(lines) + "\n")


def expressions_to_check(prometheus, node):
    """(kind, where, expression) of every dashboard expression and every loaded rule."""
    values = dict(SUBSTITUTE, node=node)
    checks = [("dashboard", where, substitute_variables(expression, values))
              for dashboard in load_dashboards().values() for where, expression in dashboard_expressions(dashboard)]
    for rule in loaded_rules(prometheus):
        kind = "recording rule" if rule["type"] == "recording" else "alert"
        checks.append((kind, rule["name"], rule["query"]))
    return checks


def problems(prometheus, checks, applying):
    """(where, what is wrong) for every check that fails now, and the allowed empties with their reasons."""
    found, allowed, selector_data = [], {}, {}
    for kind, where, expression in checks:
        expression_selectors = selectors(expression)
        result = query(prometheus, expression)
        reason = allowed_reason(expression_selectors, applying)
        if kind != "alert" and not result:
            if reason:
                allowed[where] = reason
            else:
                found.append((where, "no data: " + expression))
        for selector in expression_selectors:
            if selector not in selector_data:
                selector_data[selector] = bool(query(prometheus, "count(%s)" % selector))
            if not selector_data[selector]:
                reason = allowed_reason([selector], applying)
                if reason:
                    allowed.setdefault(where, reason)
                else:
                    found.append((where, "no series match " + selector))
    return found, allowed


@pytest.fixture(scope="module")
def observed(deployed):
    lab = deployed
    prometheus = monitoring.prometheus_url(lab)
    backup_host = lab.group("storage")[0]
    write_backup_sample(lab, backup_host)
    try:
        with Traffic(ai_endpoint_url(lab.topology), "mixed", workers=2) as traffic:
            assert traffic.wait_for_answers(10, timeout=120), traffic.failures[:3]
        applying = allowances(lab_jobs(prometheus))
        checks = expressions_to_check(prometheus, lab.group("ai_nodes")[0])
        deadline = time.monotonic() + DEADLINE_SECONDS
        # Rates need two samples in their window and recording rules an evaluation: wait for them, not for a time.
        while True:
            found, allowed = problems(prometheus, checks, applying)
            if not found or time.monotonic() > deadline:
                break
            time.sleep(5)
        yield {"checks": checks, "problems": found, "allowed": allowed}
    finally:
        lab.ssh(backup_host, "rm -f %s" % BACKUP_FILE)


def problems_of(observed, kind):
    wheres = {where for check_kind, where, _expression in observed["checks"] if check_kind == kind}
    return [(where, problem) for where, problem in observed["problems"] if where in wheres]


def test_every_dashboard_expression_returns_data(observed):
    for where, reason in sorted(observed["allowed"].items()):
        print("allowed empty: %s (%s)" % (where, reason))
    assert problems_of(observed, "dashboard") == []


def test_every_recording_rule_returns_data(observed):
    assert any(kind == "recording rule" for kind, _where, _expression in observed["checks"])
    assert problems_of(observed, "recording rule") == []


def test_every_alert_reads_series_that_exist(observed):
    assert sum(kind == "alert" for kind, _where, _expression in observed["checks"]) >= 20
    assert problems_of(observed, "alert") == []


def test_every_allowed_empty_is_documented():
    documented = (REPO / "docs" / "monitoring.md").read_text(encoding="utf-8")
    assert all(reason in documented for _pattern, reason, _job in ALLOWED_EMPTY)
