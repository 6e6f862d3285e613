"""The lab's SMTP sink (lab.smtp_sink), spoken to with smtplib: what it keeps of the envelope and the message, the
commands it refuses, its limits, and wait_for. Last, Alertmanager itself (the Debian package the lab runs) sends
an alert to it with the alertmanager role's e-mail settings, as a lab test would set them."""

from __future__ import annotations

import shutil
import smtplib
import socket
import subprocess
import threading
import time
from email import policy
from email.message import EmailMessage

import httpx
import pytest
from lab.proc import wait_until
from lab.smtp_sink import MAX_LINE_BYTES, SmtpSink
from loopback import free_port
from role_templates import render_role_template

SENDER = "alertmanager@lab.test"


@pytest.fixture
def sink():
    with SmtpSink("127.0.0.1") as started:
        yield started


def connect(sink):
    return smtplib.SMTP("127.0.0.1", sink.port, timeout=10)


def message(subject, body, to=("ops@lab.test",)):
    """The message's bytes with CRLF line ends, as SMTP clients send them."""
    composed = EmailMessage()
    composed["From"] = SENDER
    composed["To"] = ", ".join(to)
    composed["Subject"] = subject
    composed.set_content(body)
    return composed.as_bytes(policy=policy.SMTP)


def test_a_plain_message_is_kept_with_its_envelope(sink):
    with connect(sink) as client:
        refused = client.sendmail(SENDER, ["ops@lab.test"], message("[FIRING:1] NodeDown", "storage1 is down\n"))
    assert refused == {}
    [received] = sink.messages
    assert (received.mail_from, received.rcpt_to) == (SENDER, ("ops@lab.test",))
    assert received.subject == "[FIRING:1] NodeDown"
    assert received.message["To"] == "ops@lab.test"
    assert received.body() == "storage1 is down\n"


def test_lines_starting_with_a_dot_arrive_as_they_were_written(sink):
    body = "first\n.hidden\n..two dots\n.\nlast\n"
    with connect(sink) as client:
        client.sendmail(SENDER, ["ops@lab.test"], message("dots", body))
    assert sink.messages[0].body() == body


def test_every_recipient_of_the_envelope_is_kept_including_those_not_in_the_headers(sink):
    recipients = ["ops@lab.test", "oncall@lab.test", "audit@lab.test"]
    with connect(sink) as client:
        client.sendmail(SENDER, recipients, message("many", "hello\n", to=recipients[:2]))
    [received] = sink.messages
    assert received.rcpt_to == tuple(recipients)
    assert received.message["To"] == "ops@lab.test, oncall@lab.test"


def test_ehlo_offers_neither_starttls_nor_auth(sink):
    with connect(sink) as client:
        code, _text = client.ehlo("alertmanager")
        assert code == 250
        assert not client.has_extn("starttls")
        assert not client.has_extn("auth")
        assert int(client.esmtp_features["size"]) == sink.max_message_bytes


def test_unknown_commands_and_commands_out_of_order_are_refused(sink):
    with connect(sink) as client:
        assert client.docmd("VRFY", "ops@lab.test")[0] == 502
        assert client.docmd("MAIL", "FROM:<%s>" % SENDER)[0] == 503  # before EHLO
        client.ehlo("alertmanager")
        assert client.docmd("DATA")[0] == 503
        assert client.docmd("RCPT", "TO:<ops@lab.test>")[0] == 503
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("ops@lab.test")[0] == 250
        assert client.rset()[0] == 250
        assert client.docmd("DATA")[0] == 503  # RSET dropped the envelope
        assert client.noop()[0] == 250
    assert sink.messages == []


def test_a_message_over_the_size_limit_is_refused_and_the_session_goes_on():
    with SmtpSink("127.0.0.1", max_message_bytes=1024) as sink, connect(sink) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as announced:
            client.sendmail(SENDER, ["ops@lab.test"], b"x" * 2048)  # smtplib announces SIZE=2048
        assert announced.value.smtp_code == 552
        client.rset()
        client.mail(SENDER)  # no SIZE: the sink finds out while reading the data
        client.rcpt("ops@lab.test")
        assert client.data(b"y" * 2048)[0] == 552
        client.sendmail(SENDER, ["ops@lab.test"], message("small", "fits\n"))
        assert [received.subject for received in sink.messages] == ["small"]


def test_a_line_over_the_limit_gets_500_and_the_connection_closed(sink):
    with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as raw:
        replies = raw.makefile("rb")
        assert replies.readline().startswith(b"220 ")
        raw.sendall(b"NOOP " + b"x" * MAX_LINE_BYTES + b"\r\n")
        assert replies.readline().startswith(b"500 ")
        assert replies.readline() == b""


def test_wait_for_returns_false_when_nothing_matches_in_time(sink):
    started = time.monotonic()
    assert sink.wait_for(lambda messages: messages, timeout=0.2) is False
    assert 0.2 <= time.monotonic() - started < 5


def test_wait_for_returns_what_the_predicate_found_once_a_message_arrives(sink):
    def send_later():
        with connect(sink) as client:
            client.sendmail(SENDER, ["ops@lab.test"], message("late", "here\n"))

    sender = threading.Thread(target=send_later)
    sender.start()
    found = sink.wait_for(lambda messages: [m for m in messages if m.subject == "late"], timeout=10)
    sender.join(timeout=10)
    assert [received.rcpt_to for received in found] == [("ops@lab.test",)]


def test_the_port_is_closed_once_the_block_ends():
    with SmtpSink("127.0.0.1") as sink:
        port = sink.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def alertmanager_ready(url):
    try:
        return httpx.get(url + "/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None,
                    reason="prometheus-alertmanager is not installed (Debian package prometheus-alertmanager)")
def test_alertmanager_delivers_an_alert_with_the_roles_email_settings(tmp_path, sink):
    settings = {"alertmanager_email_to": ["ops@lab.test", "oncall@lab.test"],
                "alertmanager_smtp_smarthost": "127.0.0.1:%d" % sink.port,
                "alertmanager_smtp_from": SENDER, "alertmanager_smtp_require_tls": False,
                "alertmanager_group_wait": "1s"}
    config = render_role_template(tmp_path, "alertmanager", "alertmanager.yml.j2",
                                  {"monitoring": {"mon1": "127.0.0.1"}}, "mon1", extra_vars=settings)
    url = "http://127.0.0.1:%d" % free_port()
    process = subprocess.Popen(["prometheus-alertmanager", "--config.file", str(config), "--storage.path",
                                str(tmp_path / "data"), "--web.listen-address", url.split("//")[1],
                                "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: alertmanager_ready(url), deadline_s=30, what="Alertmanager", interval_s=0.1)
        alert = {"labels": {"alertname": "NodeDown", "node": "storage1", "tier": "cluster", "severity": "critical"},
                 "annotations": {"summary": "storage1 is down"}}
        httpx.post(url + "/api/v2/alerts", json=[alert], timeout=10).raise_for_status()
        found = sink.wait_for(lambda messages: [m for m in messages if "NodeDown" in m.subject], timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert found, "no e-mail within 30 s"
    received = found[0]
    assert (received.mail_from, received.rcpt_to) == (SENDER, ("ops@lab.test", "oncall@lab.test"))
    assert received.subject.startswith("[FIRING:1] NodeDown")
    assert "storage1 is down" in received.body()
