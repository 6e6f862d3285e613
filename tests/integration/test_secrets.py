"""Secrets stay secret: site.yml run with -vvv and --diff, given the secrets a site keeps in its vault, prints none
of them, and no file it renders on any lab host holds one, except the files made to hold a secret.

The lab inventory already gives the load balancers their API keys and the stats page its password; this run adds
an SMTP login and a Slack webhook URL for Alertmanager (a vars file, as a vault would be). The module's teardown runs
the monitoring hosts' configuration again without them, which also removes their secret files.
"""

from __future__ import annotations

import shlex

import pytest
import yaml
from lab import monitoring
from lab.inventory import LAB_API_KEYS, LOADBALANCER_VARS

pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.engine("ollama"), pytest.mark.timeout(1800)]

ALERTMANAGER_SECRETS = {
    "alertmanager_smtp_auth_password": "lab-smtp-password-3e9d1c5a",
    "alertmanager_slack_webhook_url": "https://chat.lab.test/hooks/T0LAB/B0LAB/lab-slack-token-77aa01",
}
SECRETS = {
    "the lab team's API key": LAB_API_KEYS["lab"],
    "the limited team's API key": LAB_API_KEYS["limited"],
    "the HAProxy stats password": LOADBALANCER_VARS["haproxy_stats_password"],
    "the SMTP password": ALERTMANAGER_SECRETS["alertmanager_smtp_auth_password"],
    "the Slack webhook URL": ALERTMANAGER_SECRETS["alertmanager_slack_webhook_url"],
    "the monitoring password": monitoring.LOGIN[1],
    "Prometheus's scrape password": monitoring.SCRAPE_LOGIN[1],
}
# Where a secret may be: the files that exist to hold one (root and the service only). Grafana reads the data
# source's password from its provisioning file.
SECRET_FILES = {"/etc/prometheus/alertmanager-secrets/smtp_password",
                "/etc/prometheus/alertmanager-secrets/slack_webhook_url",
                "/etc/prometheus/scrape-password", "/etc/grafana/provisioning/datasources/namtech.yml",
                *(f"/etc/prometheus/{service}-web/web-key.pem" for service in ("node-exporter", "prometheus",
                                                                               "alertmanager"))}
# Where the roles render files.
SEARCHED_DIRECTORIES = ("/etc", "/opt", "/usr/local", "/var/lib/namtech_ai")


@pytest.fixture(scope="module")
def verbose_run(deployed, tmp_path_factory):
    lab = deployed
    vault = tmp_path_factory.mktemp("vault") / "secrets.yml"
    vault.write_text(yaml.safe_dump(dict(
        ALERTMANAGER_SECRETS, alertmanager_email_to=["oncall@lab.test"],
        alertmanager_smtp_smarthost="127.0.0.1:2525", alertmanager_smtp_from="alertmanager@lab.test",
        alertmanager_smtp_auth_username="lab-smtp")))
    try:
        done = lab.run_playbook("playbooks/site.yml", args=["-vvv", "--diff", "-e", "@%s" % vault], timeout=1800)
        yield lab, done.stdout + done.stderr
    finally:
        lab.run_playbook("playbooks/monitoring.yml",
                         args=["--limit", ",".join(lab.group("monitoring")), "--tags", "configure"], timeout=1800)


def test_the_run_was_verbose_and_used_the_secrets(verbose_run):
    lab, output = verbose_run
    assert "ESTABLISH SSH CONNECTION" in output
    monitor = lab.group("monitoring")[0]
    smtp_password = lab.ssh(monitor, "stat -c %a:%U:%G /etc/prometheus/alertmanager-secrets/smtp_password; "
                                     "cat /etc/prometheus/alertmanager-secrets/smtp_password").stdout.splitlines()
    assert smtp_password == ["640:root:prometheus", ALERTMANAGER_SECRETS["alertmanager_smtp_auth_password"]]


def secrets():
    """SECRETS and the monitoring services' TLS private key (a line of its body: made when the lab came up)."""
    key_line = monitoring.KEY_PATH.read_text().splitlines()[1]
    return dict(SECRETS, **{"the monitoring TLS private key": key_line})


def test_no_secret_in_the_verbose_output(verbose_run):
    _lab, output = verbose_run
    leaked = sorted(name for name, secret in secrets().items() if secret in output)
    assert leaked == []


def files_holding(lab, host, secrets):
    patterns = " ".join("-e %s" % shlex.quote(secret) for secret in secrets)
    found = lab.ssh(host, "grep -rlsF %s %s || true" % (patterns, " ".join(SEARCHED_DIRECTORIES)), timeout=300)
    return set(found.stdout.split())


def test_no_rendered_file_holds_a_secret_except_the_secret_files(verbose_run):
    lab, _output = verbose_run
    holding = {host: files_holding(lab, host, secrets().values()) - SECRET_FILES for host in lab.hosts}
    assert {host: files for host, files in holding.items() if files} == {}
