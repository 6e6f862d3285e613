"""The monitoring playbook on the lab: node_exporter on every host, Prometheus and Alertmanager on `monitoring`.
Every generated scrape target is up, every alert rule evaluates, services listen on private addresses only, a
metric written to the textfile directory reaches Prometheus, a second run changes nothing, and faults reach people:
a stopped node_exporter (NodeDown) and a stopped engine (LLMEngineDown) reach a webhook receiver and an SMTP sink, a
slow model version raises LLMCanaryTimeToFirstTokenHigh, a full disk DiskAlmostFull; each resolves once undone.

The run uses short intervals (scrape and evaluation every 5 s, alerts after 10 s, a canary every 2 s, a time to
first token threshold the lab's slow model exceeds) and receivers on this machine; the module's teardown runs the
playbook again on the monitoring hosts and AI nodes with the defaults."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from lab import monitoring
from lab.proc import changed_per_host, wait_for
from lab.smtp_sink import SmtpSink

# Three runs of the playbook on eight hosts: well beyond the default 300 s per test on a busy machine.
pytestmark = [pytest.mark.topology("pro", "cluster"), pytest.mark.timeout(1800)]

PLAYBOOK = "playbooks/monitoring.yml"
# This machine's address on the lab network (the podman gateway): lab hosts reach the receiver there.
GATEWAY = "10.89.231.1"
FAST = {
    "prometheus_scrape_interval": "5s",
    "prometheus_scrape_timeout": "4s",
    "prometheus_evaluation_interval": "5s",
    "prometheus_alert_node_down_for": "10s",
    "alertmanager_group_wait": "1s",
    "alertmanager_group_interval": "5s",
    "prometheus_alert_engine_down_for": "10s",
    "prometheus_alert_for": {"DiskAlmostFull": "10s", "LLMCanaryTimeToFirstTokenHigh": "10s"},
    "prometheus_alert_canary_window": "1m",
    # lab-chat:bad answers its first token after 0.25 s, the good versions within 0.03 s.
    "prometheus_alert_canary_ttft_p95_seconds": 0.15,
    "llm_exporter_canary_interval": 2,
}
# From the fault to the notification: the alert's 10 s, a scrape and an evaluation (5 s each), Alertmanager's
# group_wait, and room for a busy machine.
NOTIFY_WITHIN_S = 90


class WebhookReceiver:
    """Alertmanager's webhook notifications, collected as they arrive (an HTTP server on GATEWAY)."""

    def __init__(self):
        self.notifications = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((GATEWAY, 0), Handler)
        self.url = "http://%s:%d/alerts" % (GATEWAY, self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def alerts(self, alertname, status, since=0):
        """The alerts of the notifications received after the first ``since`` ones."""
        return [alert for notification in self.notifications[since:] for alert in notification["alerts"]
                if alert["labels"].get("alertname") == alertname and alert["status"] == status]


@pytest.fixture(scope="module")
def monitored(deployed):
    """On the deployed lab, the playbook run once with fast intervals and a webhook receiver; the defaults put back
    afterwards."""
    lab = deployed
    receiver = WebhookReceiver().start()
    mailbox = SmtpSink(GATEWAY).start()
    extra_vars = dict(FAST, alertmanager_webhook_urls=[receiver.url], alertmanager_email_to=["oncall@lab.test"],
                      alertmanager_smtp_smarthost="%s:%d" % (GATEWAY, mailbox.port),
                      alertmanager_smtp_from="alertmanager@lab.test", alertmanager_smtp_require_tls=False)
    try:
        started = time.monotonic()
        lab.run_playbook(PLAYBOOK, extra_vars, timeout=1800)
        seconds = time.monotonic() - started
        monitor = lab.group("monitoring")[0]
        yield {"lab": lab, "receiver": receiver, "mailbox": mailbox, "extra_vars": extra_vars, "seconds": seconds,
               "prometheus": monitoring.prometheus_url(lab), "monitor": monitor}
    finally:
        receiver.stop()
        mailbox.stop()
        lab.run_playbook(PLAYBOOK, args=["--limit", "monitoring:ai_nodes", "--tags", "configure"], timeout=1800)


def targets(prometheus):
    return monitoring.get(prometheus + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]


def query(prometheus, expression):
    return monitoring.get(prometheus + "/api/v1/query", params={"query": expression}, timeout=10).json()


def expected_targets(lab):
    """(job, node) of every target the inventory describes (the lab's AI nodes run Ollama: no vllm job, and no
    token meter unless the inventory enables it)."""
    monitors = lab.group("monitoring")
    return ({("node", host) for host in lab.hosts} | {("haproxy", lb) for lb in lab.group("loadbalancers")}
            | {("alertmanager", host) for host in monitors} | {("prometheus", host) for host in monitors}
            | {("llm_exporter", host) for host in lab.group("ai_nodes")})


def test_every_target_the_inventory_describes_is_scraped_and_up(monitored):
    lab, prometheus = monitored["lab"], monitored["prometheus"]
    print("\nfirst run of %s: %.0fs" % (PLAYBOOK, monitored["seconds"]))
    started = time.monotonic()
    active = wait_for(lambda: (found := targets(prometheus)) and all(t["health"] == "up" for t in found) and found,
                      timeout=60)
    print("every target up %.1fs after the run" % (time.monotonic() - started))
    assert {(t["labels"]["job"], t["labels"]["node"]) for t in active} == expected_targets(lab)
    tier = "cluster" if len(lab.group("loadbalancers")) > 1 else "pro"
    for target in active:
        labels = target["labels"]
        assert labels["tier"] == tier, labels
        ai_node = labels["node"] in lab.group("ai_nodes")
        assert ("engine" in labels) == (ai_node or labels["job"] == "haproxy"), labels
        address = target["scrapeUrl"].split("//", 1)[1].split(":", 1)[0]
        assert address == lab.hosts[labels["node"]].address, target["scrapeUrl"]


def test_every_alert_rule_evaluates_without_error(monitored):
    prometheus = monitored["prometheus"]

    def evaluated_rules():
        groups = monitoring.get(prometheus + "/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(rule["lastEvaluation"] > "2000" for rule in rules) else None

    rules = wait_for(evaluated_rules, timeout=60)
    assert len(rules) == 37
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []
    for rule in rules:
        answer = query(prometheus, rule["query"])
        assert answer["status"] == "success", (rule["name"], answer)


def test_prometheus_alertmanager_and_node_exporter_serve_tls_and_ask_for_a_login(monitored):
    lab, monitor = monitored["lab"], monitored["monitor"]
    endpoints = {"prometheus": (monitoring.prometheus_url(lab) + "/api/v1/status/buildinfo", monitoring.LOGIN),
                 "alertmanager": (monitoring.alertmanager_url(lab) + "/api/v2/status", monitoring.LOGIN),
                 "node_exporter": (monitoring.node_exporter_url(lab, monitor) + "/metrics", monitoring.SCRAPE_LOGIN)}
    trusted = ssl.create_default_context(cafile=str(monitoring.CA_PATH))
    statuses = {}
    for name, (url, login) in endpoints.items():
        statuses[name] = (httpx.get(url, verify=trusted, timeout=10).status_code,
                          httpx.get(url, auth=(login[0], "wrong"), verify=trusted, timeout=10).status_code,
                          httpx.get(url.replace("https://", "http://"), auth=login, timeout=10).status_code,
                          httpx.get(url, auth=login, verify=trusted, timeout=10).status_code)
    assert statuses == {name: (401, 401, 400, 200) for name in endpoints}
    scraped = {(target["labels"]["job"], target["scrapeUrl"].split(":")[0])
               for target in targets(monitored["prometheus"])
               if target["labels"]["job"] in ("node", "alertmanager", "prometheus")}
    assert scraped == {("node", "https"), ("alertmanager", "https"), ("prometheus", "https")}


def test_services_listen_on_the_private_address_only(monitored):
    lab, monitor = monitored["lab"], monitored["monitor"]
    listening = lab.ssh(monitor, "ss -Hltn").stdout
    address = lab.hosts[monitor].address
    local = {line.split()[3] for line in listening.splitlines()}
    for port in (9090, 9093, 9100):
        assert "%s:%d" % (address, port) in local, listening
        assert not {"0.0.0.0:%d" % port, "*:%d" % port, "[::]:%d" % port} & local, listening
    assert not any(entry.endswith(":9094") for entry in local), "a lone Alertmanager needs no cluster port"


def test_a_metric_written_to_the_textfile_directory_reaches_prometheus(monitored):
    lab, prometheus = monitored["lab"], monitored["prometheus"]
    host = "storage1" if "storage1" in lab.hosts else lab.group("monitoring")[0]
    path = "/var/lib/prometheus/node-exporter/lab_test_backup.prom"
    lab.ssh(host, "printf 'namtech_backup_last_success_timestamp_seconds{backup=\"lab\"} %%d\\n' \"$(date +%%s)\" "
                  "> %s.tmp && mv %s.tmp %s" % (path, path, path))
    try:
        found = wait_for(lambda: query(prometheus, 'namtech_backup_last_success_timestamp_seconds{backup="lab"}')
                         ["data"]["result"], timeout=30)
        assert found[0]["metric"]["node"] == host
        assert abs(float(found[0]["value"][1]) - time.time()) < 120
    finally:
        lab.ssh(host, "rm -f %s" % path)


def test_a_stopped_node_exporter_reaches_the_webhook_as_node_down_and_then_resolved(monitored):
    lab, receiver = monitored["lab"], monitored["receiver"]
    host = "storage1" if "storage1" in lab.hosts else lab.group("ai_nodes")[0]
    lab.ssh(host, "systemctl stop prometheus-node-exporter")
    stopped = time.monotonic()
    try:
        firing = wait_for(lambda: [a for a in receiver.alerts("NodeDown", "firing") if a["labels"].get("node") == host],
                          timeout=120)
        notified = time.monotonic() - stopped
    finally:
        lab.ssh(host, "systemctl start prometheus-node-exporter")
    print("\nNodeDown for %s reached the webhook %.1fs after node_exporter stopped" % (host, notified))
    alert = firing[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["tier"] in ("pro", "cluster")
    assert alert["annotations"]["runbook"].endswith("#nodedown")
    wait_for(lambda: [a for a in receiver.alerts("NodeDown", "resolved") if a["labels"].get("node") == host],
             timeout=120)


def test_node_down_inhibits_the_other_alerts_of_that_node_only(monitored):
    """Alerts posted straight to Alertmanager's API for a node that does not exist: no host is disturbed."""
    alertmanager = monitoring.alertmanager_url(monitored["lab"]) + "/api/v2"

    def alert(name, node):
        return {"labels": {"alertname": name, "node": node, "severity": "critical", "test": "inhibition"},
                "annotations": {"summary": "lab test"}}

    alerts = [alert("NodeDown", "labtest1"), alert("TargetDown", "labtest1"), alert("TargetDown", "labtest2")]
    assert monitoring.post(alertmanager + "/alerts", json=alerts, timeout=10).status_code == 200
    try:
        def states():
            found = monitoring.get(alertmanager + "/alerts", params={"filter": 'test="inhibition"'}, timeout=10).json()
            by_key = {(a["labels"]["alertname"], a["labels"].get("node")): a["status"] for a in found}
            return by_key if len(by_key) == 3 and by_key[("TargetDown", "labtest1")]["inhibitedBy"] else None

        found = wait_for(states, timeout=30)
        assert found[("TargetDown", "labtest1")]["state"] == "suppressed"
        assert found[("TargetDown", "labtest2")]["state"] == "active"
        assert found[("NodeDown", "labtest1")]["state"] == "active"
    finally:
        ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        monitoring.post(alertmanager + "/alerts", json=[dict(a, endsAt=ended) for a in alerts], timeout=10)


def test_a_second_run_changes_nothing(monitored):
    again = monitored["lab"].run_playbook(PLAYBOOK, monitored["extra_vars"], timeout=1800)
    assert sum(changed_per_host(again.stdout).values()) == 0, again.stdout[-3000:]


# ---- faults that must reach people, and resolve -------------------------------------------------------------

def alerts_for(receiver, alertname, status, node, since=0):
    return [alert for alert in receiver.alerts(alertname, status, since) if alert["labels"].get("node") == node]


def active_alerts(prometheus, alertname, node):
    found = query(prometheus, 'ALERTS{alertname="%s", node="%s"}' % (alertname, node))
    return found["data"]["result"]


def quiet_before_the_fault(monitored, alertname, node):
    """Wait until the alert is not active for the node (a busy machine can make a canary slow by itself), and
    return how many notifications came so far: the test reads only those that come after the fault."""
    wait_for(lambda: not active_alerts(monitored["prometheus"], alertname, node), timeout=240)
    return len(monitored["receiver"].notifications)


def mails_about(mailbox, alertname, node, since=0):
    return [mail for mail in mailbox.messages[since:] if alertname in mail.subject and node in mail.body()]


def test_a_stopped_engine_reaches_the_webhook_and_the_mailbox_then_resolves(monitored):
    lab, receiver, mailbox = monitored["lab"], monitored["receiver"], monitored["mailbox"]
    node = lab.group("ai_nodes")[-1]
    since = quiet_before_the_fault(monitored, "LLMEngineDown", node)
    mails_before = len(mailbox.messages)
    lab.ssh(node, "systemctl stop ollama")
    stopped = time.monotonic()
    try:
        firing = wait_for(lambda: alerts_for(receiver, "LLMEngineDown", "firing", node, since),
                          timeout=NOTIFY_WITHIN_S)
        webhook_after = time.monotonic() - stopped
        mail = wait_for(lambda: mails_about(mailbox, "LLMEngineDown", node, mails_before), timeout=NOTIFY_WITHIN_S)
        mail_after = time.monotonic() - stopped
    finally:
        lab.ssh(node, "systemctl start ollama")
    print("\nLLMEngineDown for %s: webhook after %.1fs, e-mail after %.1fs" % (node, webhook_after, mail_after))
    assert firing[0]["labels"]["severity"] == "critical"
    assert firing[0]["labels"]["engine"] == "ollama"
    assert list(mail[0].rcpt_to) == ["oncall@lab.test"]
    assert "#llmenginedown" in mail[0].body()
    wait_for(lambda: alerts_for(receiver, "LLMEngineDown", "resolved", node, since), timeout=NOTIFY_WITHIN_S)


def serve_alias_from(lab, node, model):
    """Point the node's `assistant` alias at ``model`` (pulled first), as a bad rollout would."""
    url = "url=http://%s:11434" % lab.hosts[node].address
    lab.ansible(node, "namtech.internal_ai.ollama_model", "%s name=%s alias=assistant" % (url, model))


def test_a_slow_model_version_raises_the_time_to_first_token_alert_then_resolves(monitored):
    lab, receiver = monitored["lab"], monitored["receiver"]
    node = lab.group("ai_nodes")[0]
    since = quiet_before_the_fault(monitored, "LLMCanaryTimeToFirstTokenHigh", node)
    serve_alias_from(lab, node, "lab-chat:bad")
    swapped = time.monotonic()
    try:
        firing = wait_for(lambda: alerts_for(receiver, "LLMCanaryTimeToFirstTokenHigh", "firing", node, since),
                          timeout=180)
        print("\nLLMCanaryTimeToFirstTokenHigh for %s reached the webhook %.1fs after the swap"
              % (node, time.monotonic() - swapped))
    finally:
        serve_alias_from(lab, node, "lab-chat:v1")
        lab.ansible(node, "namtech.internal_ai.ollama_model",
                    "url=http://%s:11434 name=lab-chat:bad state=absent" % lab.hosts[node].address)
    assert firing[0]["labels"]["severity"] == "warning"
    # The window (1 m) has to forget the slow answers first.
    wait_for(lambda: alerts_for(receiver, "LLMCanaryTimeToFirstTokenHigh", "resolved", node, since), timeout=240)


def test_a_full_disk_raises_the_disk_alert_then_resolves(monitored):
    lab, receiver = monitored["lab"], monitored["receiver"]
    host = (lab.group("storage") or lab.group("loadbalancers"))[0]
    since = quiet_before_the_fault(monitored, "DiskAlmostFull", host)
    with lab.disk_full(host) as fill:
        firing = wait_for(lambda: [alert for alert in alerts_for(receiver, "DiskAlmostFull", "firing", host, since)
                                   if alert["labels"]["mountpoint"] == fill.mount_point], timeout=NOTIFY_WITHIN_S)
    print("\nDiskAlmostFull for %s:%s (%d bytes written)" % (host, fill.mount_point, fill.filled_bytes))
    assert firing[0]["labels"]["severity"] == "critical"
    wait_for(lambda: [alert for alert in alerts_for(receiver, "DiskAlmostFull", "resolved", host, since)
                      if alert["labels"]["mountpoint"] == fill.mount_point], timeout=NOTIFY_WITHIN_S)
