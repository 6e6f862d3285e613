"""The alertmanager role's configuration template, rendered by Ansible: every channel that is set becomes part of
the one receiver, node down inhibits the node's other alerts, and the result passes `amtool check-config`."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from role_templates import render_role_template

GROUPS = {"monitoring": {"mon1": "10.0.0.20"}}
ALL_CHANNELS = {
    "alertmanager_email_to": ["ops@example.com", "oncall@example.com"],
    "alertmanager_smtp_smarthost": "smtp.example.com:587",
    "alertmanager_smtp_from": "alertmanager@example.com",
    "alertmanager_smtp_auth_username": "alertmanager",
    "alertmanager_smtp_auth_password": "s3cret",
    "alertmanager_slack_webhook_url": "https://chat.example.com/hooks/abc",
    "alertmanager_slack_channel": "#ai-alerts",
    "alertmanager_webhook_urls": ["http://10.0.0.40:8080/alerts", "https://teams-bridge.example.com/alertmanager"],
}

needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None,
                                  reason="amtool is not installed (Debian package prometheus-alertmanager)")


def render(tmp_path, extra_vars=None):
    return render_role_template(tmp_path, "alertmanager", "alertmanager.yml.j2", GROUPS, "mon1", extra_vars=extra_vars)


def test_without_channels_the_receiver_sends_nothing(tmp_path):
    config = yaml.safe_load(render(tmp_path).read_text(encoding="utf-8"))
    assert config["receivers"] == [{"name": "namtech"}]
    assert "smtp_smarthost" not in config["global"]


def test_every_channel_that_is_set_is_part_of_the_receiver(tmp_path):
    config = yaml.safe_load(render(tmp_path, ALL_CHANNELS).read_text(encoding="utf-8"))
    receiver = config["receivers"][0]
    assert receiver["email_configs"] == [{"to": "ops@example.com, oncall@example.com", "send_resolved": True}]
    assert config["global"]["smtp_auth_password_file"] == "/etc/prometheus/alertmanager-secrets/smtp_password"
    assert config["global"]["smtp_require_tls"] is True
    assert receiver["slack_configs"][0]["api_url_file"] == "/etc/prometheus/alertmanager-secrets/slack_webhook_url"
    assert receiver["slack_configs"][0]["channel"] == "#ai-alerts"
    assert "{{ .Annotations.runbook }}" in receiver["slack_configs"][0]["text"]
    assert [hook["url"] for hook in receiver["webhook_configs"]] == ALL_CHANNELS["alertmanager_webhook_urls"]


def test_node_down_inhibits_the_nodes_other_alerts(tmp_path):
    config = yaml.safe_load(render(tmp_path).read_text(encoding="utf-8"))
    assert {"source_matchers": ['alertname="NodeDown"'], "target_matchers": ['alertname!="NodeDown"'],
            "equal": ["node"]} in config["inhibit_rules"]


@needs_amtool
@pytest.mark.parametrize("channels", [{}, ALL_CHANNELS], ids=["no channel", "every channel"])
def test_the_rendered_configuration_passes_amtool(tmp_path, channels):
    path = render(tmp_path, channels)
    result = subprocess.run(["amtool", "check-config", str(path)], check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_smtp_password_and_the_slack_url_stay_out_of_the_configuration(tmp_path):
    text = render(tmp_path, ALL_CHANNELS).read_text(encoding="utf-8")
    assert ALL_CHANNELS["alertmanager_smtp_auth_password"] not in text
    assert ALL_CHANNELS["alertmanager_slack_webhook_url"] not in text
