# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A client for HAProxy's runtime API (the ``stats socket ... level admin``), over a unix or TCP socket.

Every command is one connection: HAProxy answers and closes in non-interactive mode. Server state is read
from ``show servers state`` (administrative and operational state, weights) joined with ``show stat``
(current sessions and queue), so a caller sees in one record what it needs to drain a server safely.
"""

from __future__ import annotations

import csv
import socket

ADMIN_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolution, hostname
ADMIN_DRAIN_BITS = 0x08 | 0x10  # forced, inherited
OPERATIONAL_STATES = {0: "down", 1: "starting", 2: "up", 3: "stopping"}
SETTABLE_STATES = ("ready", "drain", "maint")
MAX_WEIGHT = 256


class HAProxyError(Exception):
    """A runtime API call failed; the message says where and what to do."""


def admin_state(bits):
    if bits & ADMIN_MAINT_BITS:
        return "maint"
    if bits & ADMIN_DRAIN_BITS:
        return "drain"
    return "ready"


def parse_servers_state(text, where):
    """Records of ``show servers state``: its first line is the format version, the second the column names."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise HAProxyError("%s: 'show servers state' answered %r, not the server state table" % (where, text[:200]))
    columns = lines[1][2:].split()
    servers = []
    for line in lines[2:]:
        fields = dict(zip(columns, line.split()))
        servers.append({
            "backend": fields["be_name"],
            "server": fields["srv_name"],
            "address": "%s:%s" % (fields["srv_addr"], fields.get("srv_port", "")),
            "state": admin_state(int(fields["srv_admin_state"])),
            "operational": OPERATIONAL_STATES.get(int(fields["srv_op_state"]), "unknown"),
            "weight": int(fields["srv_uweight"]),
            "initial_weight": int(fields["srv_iweight"]),
        })
    return servers


def parse_stat_sessions(text):
    """``{(backend, server): {"sessions", "queued", "status"}}`` from the CSV of ``show stat``."""
    rows = csv.DictReader(line for line in text.lstrip("# ").splitlines() if line.strip())
    sessions = {}
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        sessions[(row["pxname"], row["svname"])] = {
            "sessions": int(row.get("scur") or 0),
            "queued": int(row.get("qcur") or 0),
            "status": row.get("status", ""),
        }
    return sessions


def endpoint_family(endpoint):
    """A path means a unix socket; ``HOST:PORT`` a TCP address."""
    if endpoint.startswith("/"):
        return socket.AF_UNIX, endpoint
    host, separator, port = endpoint.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise HAProxyError("runtime API endpoint %r is neither a socket path nor HOST:PORT" % endpoint)
    return socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, (host.strip("[]"), int(port))


class RuntimeApi:
    def __init__(self, endpoint, timeout=5.0):
        self.endpoint = endpoint
        self.timeout = timeout
        self._family, self._address = endpoint_family(endpoint)

    def command(self, text):
        """Send one command and return HAProxy's whole answer."""
        try:
            with socket.socket(self._family, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.timeout)
                connection.connect(self._address)
                connection.sendall(text.encode() + b"\n")
                return self._read_all(connection).decode("utf-8", "replace")
        except OSError as exc:
            raise HAProxyError(
                "cannot use the HAProxy runtime API at %s (%s). Check that haproxy runs and that its config has "
                "'stats socket %s level admin'" % (self.endpoint, exc, self.endpoint)
            ) from None

    @staticmethod
    def _read_all(connection):
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def servers(self):
        """Every server of every backend, with its admin and operational state, weight, sessions and queue."""
        servers = parse_servers_state(self.command("show servers state"), self.endpoint)
        sessions = parse_stat_sessions(self.command("show stat"))
        for server in servers:
            server.update(sessions.get((server["backend"], server["server"]),
                                       {"sessions": 0, "queued": 0, "status": "unknown"}))
        return servers

    def _set(self, command):
        answer = self.command(command).strip()
        if answer:
            raise HAProxyError("%s refused '%s': %s" % (self.endpoint, command, answer))

    def set_state(self, backend, server, state):
        if state not in SETTABLE_STATES:
            raise HAProxyError("state must be one of %s, not %r" % (", ".join(SETTABLE_STATES), state))
        self._set("set server %s/%s state %s" % (backend, server, state))

    def set_weight(self, backend, server, weight):
        self._set("set server %s/%s weight %d" % (backend, server, weight))
