"""The prometheus role's configuration template, rendered by Ansible for box, pro and cluster inventories: the
scrape jobs and the tier label follow the inventory alone (llm_exporter on every AI node, llm_meter where
llm_meter_enabled), node_exporter, Alertmanager and Prometheus are reached with the login and CA when they are set,
and the result passes `promtool check config`."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from role_templates import render_role_template

TOPOLOGIES = {
    "box": {"ai_nodes": {"ai1": "10.0.0.10"}, "monitoring": {"mon1": "10.0.0.20"}},
    "pro": {"ai_nodes": {"ai1": "10.0.0.10", "ai2": "10.0.0.11"}, "loadbalancers": {"lb1": "10.0.0.30"},
            "monitoring": {"mon1": "10.0.0.20"}},
    "cluster": {"ai_nodes": {"ai1": "10.0.0.10", "ai2": "10.0.0.11", "ai3": "10.0.0.12"},
                "loadbalancers": {"lb1": "10.0.0.30", "lb2": "10.0.0.31"}, "monitoring": {"mon1": "10.0.0.20"}},
}


def render(tmp_path, groups, engine="ollama", extra_vars=None, **all_vars):
    return render_role_template(tmp_path, "prometheus", "prometheus.yml.j2", groups, "mon1", extra_vars=extra_vars,
                                all_vars=dict(all_vars, ai_engine=engine))


def targets_by_job(config):
    jobs = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            jobs.setdefault(job["job_name"], []).append((static["targets"][0], static["labels"]))
    return jobs


@pytest.mark.parametrize("tier", sorted(TOPOLOGIES))
def test_the_tier_and_the_jobs_follow_the_inventory(tmp_path, tier):
    groups = TOPOLOGIES[tier]
    jobs = targets_by_job(yaml.safe_load(render(tmp_path, groups).read_text(encoding="utf-8")))
    every_host = {host: address for hosts in groups.values() for host, address in hosts.items()}
    assert {labels["tier"] for targets in jobs.values() for _target, labels in targets} == {tier}
    assert {target: labels["node"] for target, labels in jobs["node"]} == {
        "%s:9100" % address: host for host, address in every_host.items()}
    assert [target for target, _labels in jobs.get("haproxy", [])] == [
        "%s:8404" % address for address in groups.get("loadbalancers", {}).values()]
    assert "vllm" not in jobs
    assert "llm_meter" not in jobs
    assert jobs["llm_exporter"] == [("%s:9778" % address, {"tier": tier, "node": host, "engine": "ollama"})
                                    for host, address in groups["ai_nodes"].items()]
    assert [target for target, _labels in jobs["alertmanager"]] == ["10.0.0.20:9093"]
    assert [target for target, _labels in jobs["prometheus"]] == ["10.0.0.20:9090"]
    assert {labels["node"]: labels.get("engine") for _target, labels in jobs["node"]} == {
        host: "ollama" if host in groups["ai_nodes"] else None for host in every_host}


def test_vllm_nodes_get_a_vllm_job(tmp_path):
    jobs = targets_by_job(yaml.safe_load(render(tmp_path, TOPOLOGIES["pro"], engine="vllm").read_text()))
    assert jobs["vllm"] == [
        ("10.0.0.10:8000", {"tier": "pro", "node": "ai1", "engine": "vllm"}),
        ("10.0.0.11:8000", {"tier": "pro", "node": "ai2", "engine": "vllm"}),
    ]


def test_llm_exporter_and_llm_meter_carry_the_engine_of_each_node(tmp_path):
    jobs = targets_by_job(yaml.safe_load(render(tmp_path, TOPOLOGIES["pro"], engine="vllm").read_text()))
    assert jobs["llm_exporter"] == [
        ("10.0.0.10:9778", {"tier": "pro", "node": "ai1", "engine": "vllm"}),
        ("10.0.0.11:9778", {"tier": "pro", "node": "ai2", "engine": "vllm"}),
    ]


def test_llm_meter_is_scraped_only_where_it_is_enabled(tmp_path):
    # A host variable in disguise: the inventory helper sets variables for all hosts, evaluated per host.
    enabled_on_ai2 = "{{ inventory_hostname == 'ai2' }}"
    config = yaml.safe_load(render(tmp_path, TOPOLOGIES["cluster"], llm_meter_enabled=enabled_on_ai2).read_text())
    jobs = targets_by_job(config)
    assert jobs["llm_meter"] == [("10.0.0.11:9779", {"tier": "cluster", "node": "ai2", "engine": "ollama"})]
    assert [job["metrics_path"] for job in config["scrape_configs"] if job["job_name"] == "llm_meter"] == ["/metrics"]


def test_the_exporter_ports_follow_the_role_variables(tmp_path):
    ports = {"prometheus_llm_exporter_port": 19778, "prometheus_llm_meter_port": 19779}
    config = yaml.safe_load(render(tmp_path, TOPOLOGIES["box"], extra_vars=ports, llm_meter_enabled=True).read_text())
    jobs = targets_by_job(config)
    assert [target for target, _labels in jobs["llm_exporter"]] == ["10.0.0.10:19778"]
    assert [target for target, _labels in jobs["llm_meter"]] == ["10.0.0.10:19779"]


SCRAPE_LOGIN = {
    "prometheus_scrape_basic_auth": {"username": "prometheus", "password": "never-in-prometheus.yml"},
    "prometheus_scrape_tls_ca_certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
}
MONITORING_CLIENT = {
    "scheme": "https",
    "tls_config": {"ca_file": "/etc/prometheus/scrape-ca.pem"},
    "basic_auth": {"username": "prometheus", "password_file": "/etc/prometheus/scrape-password"},
}
CLIENT_KEYS = ("scheme", "tls_config", "basic_auth")


def client_settings(section):
    return {key: section[key] for key in CLIENT_KEYS if key in section}


def test_the_login_and_ca_reach_node_exporter_alertmanager_and_prometheus_only(tmp_path):
    path = render(tmp_path, TOPOLOGIES["cluster"], engine="vllm", extra_vars=SCRAPE_LOGIN, llm_meter_enabled=True)
    text = path.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    settings = {job["job_name"]: client_settings(job) for job in config["scrape_configs"]}
    assert settings == {"node": MONITORING_CLIENT, "alertmanager": MONITORING_CLIENT, "prometheus": MONITORING_CLIENT,
                        "haproxy": {}, "vllm": {}, "llm_exporter": {}, "llm_meter": {}}
    assert [client_settings(section) for section in config["alerting"]["alertmanagers"]] == [MONITORING_CLIENT]
    assert "never-in-prometheus.yml" not in text


def test_a_login_without_a_ca_stays_on_http(tmp_path):
    login = {"prometheus_scrape_basic_auth": SCRAPE_LOGIN["prometheus_scrape_basic_auth"]}
    config = yaml.safe_load(render(tmp_path, TOPOLOGIES["box"], extra_vars=login).read_text(encoding="utf-8"))
    node = next(job for job in config["scrape_configs"] if job["job_name"] == "node")
    assert client_settings(node) == {"basic_auth": MONITORING_CLIENT["basic_auth"]}


def test_without_login_or_ca_no_job_has_client_settings(tmp_path):
    config = yaml.safe_load(render(tmp_path, TOPOLOGIES["cluster"]).read_text(encoding="utf-8"))
    assert [client_settings(job) for job in config["scrape_configs"]] == [{}] * len(config["scrape_configs"])
    assert [client_settings(section) for section in config["alerting"]["alertmanagers"]] == [{}]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian package prometheus)")
@pytest.mark.parametrize("extra_vars", [None, SCRAPE_LOGIN], ids=["plain", "login-and-ca"])
def test_the_rendered_configuration_passes_promtool(tmp_path, extra_vars):
    path = render(tmp_path, TOPOLOGIES["cluster"], engine="vllm", extra_vars=extra_vars, llm_meter_enabled=True)
    result = subprocess.run(["promtool", "check", "config", str(path)], check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
