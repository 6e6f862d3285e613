"""The engine answers on sockets with Nagle's algorithm off, like real Ollama: no 40 ms delayed-ACK stall."""

from __future__ import annotations

import socket

from lab.engine.server import Handler


def test_accepted_connections_have_tcp_nodelay(engine):
    seen = []
    original_setup = Handler.setup

    def recording_setup(self):
        original_setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    Handler.setup = recording_setup
    try:
        with socket.create_connection(("127.0.0.1", int(engine.url.rsplit(":", 1)[1])), timeout=5) as client:
            client.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        Handler.setup = original_setup
    assert seen and seen[0] != 0
