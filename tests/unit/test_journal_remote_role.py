"""The journal_remote role's configuration and units, rendered by Ansible for a receiver and a sender, over HTTP (the
lab) and HTTPS: the receiver listens on its private address to the inventory's hosts only, the senders upload to
it, and the units pass `systemd-analyze verify` together with the package's own (where the package is installed)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest
from role_templates import render_role_template

ROLE = "journal_remote"
GROUPS = {"monitoring": {"mon1": "10.0.0.20"}, "ai_nodes": {"ai1": "10.0.0.10", "ai2": "10.0.0.11"},
          "loadbalancers": {"lb1": "10.0.0.30"}}
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
TLS = {"journal_remote_tls": True, "journal_remote_tls_certificate": PEM_CERTIFICATE,
       "journal_remote_tls_key": PEM_KEY, "journal_remote_tls_ca_certificate": PEM_CERTIFICATE}
PACKAGE_UNITS = pathlib.Path("/lib/systemd/system")
# (template, the host it is rendered for, whether it depends on journal_remote_tls, where systemd reads it)
UNIT_FILES = [
    ("systemd-journal-remote.socket.conf.j2", "mon1", False, "systemd-journal-remote.socket.d/namtech.conf"),
    ("systemd-journal-remote.service.conf.j2", "mon1", True, "systemd-journal-remote.service.d/namtech.conf"),
    ("systemd-journal-upload.service.conf.j2", "ai1", False, "systemd-journal-upload.service.d/namtech.conf"),
    ("vacuum.service.j2", "mon1", False, "namtech-journal-remote-vacuum.service"),
    ("vacuum.timer.j2", "mon1", False, "namtech-journal-remote-vacuum.timer"),
]
CUSTOM_VACUUM = {"journal_remote_max_use": "50G", "journal_remote_max_age": "2weeks",
                 "journal_remote_vacuum_schedule": "daily"}


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    """render(template, host, **variables): the text Ansible renders, each combination rendered once per module."""
    cache = {}

    def rendered(template, host, **variables):
        key = (template, host, json.dumps(variables, sort_keys=True))
        if key not in cache:
            path = render_role_template(tmp_path_factory.mktemp("render"), ROLE, template, GROUPS, host,
                                        extra_vars=variables or None)
            cache[key] = path.read_text(encoding="utf-8")
        return cache[key]
    return rendered


def settings(text):
    """[(section, key, value)] of a systemd-style file, in order (keys repeat: ExecStart= resets a list)."""
    found, section = [], None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _sep, value = line.partition("=")
        found.append((section, key, value))
    return found


def values(text, section, key):
    return [value for found_section, found_key, value in settings(text) if (found_section, found_key) == (section, key)]


def test_the_receiver_listens_on_its_private_address_to_the_inventorys_hosts_only(render):
    socket = render("systemd-journal-remote.socket.conf.j2", "mon1")
    assert values(socket, "Socket", "ListenStream") == ["", "10.0.0.20:19532"]
    assert values(socket, "Socket", "IPAddressDeny") == ["any"]
    assert values(socket, "Socket", "IPAddressAllow") == ["localhost 10.0.0.10 10.0.0.11 10.0.0.30 10.0.0.20"]


def test_the_allowed_sources_follow_the_groups_and_the_extra_addresses(render):
    socket = render("systemd-journal-remote.socket.conf.j2", "mon1",
                    journal_remote_allowed_source_groups=["ai_nodes", "no_such_group"],
                    journal_remote_allowed_sources=["192.168.5.0/24"], journal_remote_port=29532)
    assert values(socket, "Socket", "ListenStream") == ["", "10.0.0.20:29532"]
    assert values(socket, "Socket", "IPAddressAllow") == ["localhost 10.0.0.10 10.0.0.11 192.168.5.0/24"]


def test_without_allowed_sources_the_socket_is_not_filtered(render):
    socket = render("systemd-journal-remote.socket.conf.j2", "mon1", journal_remote_allowed_source_groups=[])
    assert values(socket, "Socket", "IPAddressDeny") == []
    assert values(socket, "Socket", "IPAddressAllow") == []


def test_over_http_the_receiver_takes_plain_uploads_and_the_senders_send_them(render):
    service = render("systemd-journal-remote.service.conf.j2", "mon1")
    assert values(service, "Service", "ExecStart") == [
        "", "/lib/systemd/systemd-journal-remote --listen-http=-3 --output=/var/log/journal/remote/"]
    assert values(service, "Service", "CapabilityBoundingSet") == [""]
    assert settings(render("journal-remote.conf.j2", "mon1")) == [("Remote", "SplitMode", "host")]
    assert settings(render("journal-upload.conf.j2", "ai1")) == [("Upload", "URL", "http://10.0.0.20:19532")]


def test_over_https_the_receiver_has_its_certificate_and_the_senders_check_it(render):
    service = render("systemd-journal-remote.service.conf.j2", "mon1", **TLS)
    assert values(service, "Service", "ExecStart")[-1] == (
        "/lib/systemd/systemd-journal-remote --listen-https=-3 --output=/var/log/journal/remote/")
    assert settings(render("journal-remote.conf.j2", "mon1", **TLS)) == [
        ("Remote", "SplitMode", "host"),
        ("Remote", "ServerKeyFile", "/etc/ssl/journal-remote/server.key"),
        ("Remote", "ServerCertificateFile", "/etc/ssl/journal-remote/server.pem")]
    assert settings(render("journal-upload.conf.j2", "ai1", **TLS)) == [
        ("Upload", "URL", "https://10.0.0.20:19532"),
        ("Upload", "ServerKeyFile", "-"), ("Upload", "ServerCertificateFile", "-"),
        ("Upload", "TrustedCertificateFile", "/etc/ssl/journal-remote/ca.pem")]


def test_a_url_that_names_the_receiver_wins(render):
    upload = render("journal-upload.conf.j2", "ai1", journal_remote_url="http://logs.example.internal:19532")
    assert values(upload, "Upload", "URL") == ["http://logs.example.internal:19532"]


def test_the_sender_retries_for_ever_in_a_sandbox(render):
    upload = render("systemd-journal-upload.service.conf.j2", "ai1")
    assert values(upload, "Unit", "StartLimitIntervalSec") == ["0"]
    assert values(upload, "Service", "Restart") == ["always"]
    assert values(upload, "Service", "ProtectSystem") == ["strict"]
    assert values(upload, "Service", "CapabilityBoundingSet") == [""]


def test_the_vacuum_timer_trims_the_received_journals_as_its_own_user(render):
    service = render("vacuum.service.j2", "mon1", **CUSTOM_VACUUM)
    assert values(service, "Service", "ExecStart") == [
        "/usr/bin/journalctl --directory=/var/log/journal/remote --vacuum-size=50G --vacuum-time=2weeks"]
    assert values(service, "Service", "User") == ["systemd-journal-remote"]
    assert values(service, "Service", "ReadWritePaths") == ["/var/log/journal/remote"]
    timer = render("vacuum.timer.j2", "mon1", **CUSTOM_VACUUM)
    assert values(timer, "Timer", "OnCalendar") == ["daily"]
    assert values(timer, "Install", "WantedBy") == ["timers.target"]


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="journalctl is not installed (Debian package systemd)")
@pytest.mark.parametrize("variables", [{}, CUSTOM_VACUUM], ids=["defaults", "custom"])
def test_journalctl_accepts_the_vacuum_limits(tmp_path, render, variables):
    command = values(render("vacuum.service.j2", "mon1", **variables), "Service", "ExecStart")[0].split()
    command = [part.replace("/var/log/journal/remote", str(tmp_path)) for part in command]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vacuuming done" in result.stdout + result.stderr


@pytest.mark.skipif(not (PACKAGE_UNITS / "systemd-journal-remote.service").is_file()
                    or shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze or the units of the Debian package systemd-journal-remote are missing")
@pytest.mark.parametrize("variables", [{}, TLS], ids=["http", "https"])
def test_the_units_and_drop_ins_pass_systemd_analyze(tmp_path, render, variables):
    for name in ("systemd-journal-remote.socket", "systemd-journal-remote.service", "systemd-journal-upload.service"):
        shutil.copy(PACKAGE_UNITS / name, tmp_path / name)
    for template, host, depends_on_tls, destination in UNIT_FILES:
        (tmp_path / destination).parent.mkdir(exist_ok=True)
        (tmp_path / destination).write_text(render(template, host, **(variables if depends_on_tls else {})))
    unit_files = sorted(str(path) for path in tmp_path.iterdir() if path.is_file())
    result = subprocess.run(["systemd-analyze", "verify", *unit_files], check=False, capture_output=True, text=True,
                            timeout=60, env={"SYSTEMD_UNIT_PATH": "%s:" % tmp_path, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(tmp_path) not in result.stdout + result.stderr
