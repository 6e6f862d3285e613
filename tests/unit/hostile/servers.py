"""What the modules talk to: loopback servers that answer plausibly or with garbage, a fake HAProxy runtime API,
and a guard that lets connections reach nothing else."""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import socketserver
import threading
from typing import NamedTuple

from loopback import LoopbackServer, free_port, send_raw

from hostile.payloads import DIGEST, OTHER_DIGEST

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class EveryPath(dict):
    """A LoopbackServer route table that sends every request to one handler."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler

    def get(self, key, default=None):
        return self.handler


def ndjson(*documents):
    return "".join(json.dumps(document) + "\n" for document in documents)


def sse(*documents):
    return "".join("data: %s\n\n" % json.dumps(document) for document in documents) + "data: [DONE]\n\n"


MODELS = [{"name": name, "model": name, "digest": digest, "size": 1, "modified_at": "2026-01-01T00:00:00Z"}
          for name, digest in (("lab-chat:v1", DIGEST), ("assistant:latest", DIGEST), ("lab-chat:v2", OTHER_DIGEST))]
CHAT = {"model": "lab-chat:v1", "message": {"role": "assistant", "content": "Paris"}, "response": "Paris",
        "done": True, "done_reason": "stop", "eval_count": 3, "prompt_eval_count": 5}
COMPLETION = {"id": "c", "object": "chat.completion.chunk", "model": "lab-chat:v1",
              "choices": [{"index": 0, "delta": {"content": "Paris"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
PROMETHEUS_VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"model": "lab-chat:v1", "node": "ai1"}, "value": [1782864000, "42"]}]}}
# path: (content type, body) as an Ollama, vLLM, Prometheus or Qdrant server would answer
PLAUSIBLE = {
    "/api/version": ("application/json", json.dumps({"version": "0.12.5"})),
    "/api/tags": ("application/json", json.dumps({"models": MODELS})),
    "/api/ps": ("application/json", json.dumps({"models": [dict(MODELS[0], processor="100% CPU",
                                                                expires_at="2026-01-01T01:00:00Z")]})),
    "/api/pull": ("application/x-ndjson", ndjson({"status": "pulling manifest"}, {"status": "success"})),
    "/api/copy": ("application/json", "{}"),
    "/api/delete": ("application/json", "{}"),
    "/api/show": ("application/json", json.dumps({"details": {"family": "llama"}, "model_info": {}})),
    "/api/chat": ("application/x-ndjson", ndjson(CHAT)),
    "/api/generate": ("application/x-ndjson", ndjson(CHAT)),
    "/v1/models": ("application/json", json.dumps({"object": "list", "data": [
        {"id": "lab-chat:v1", "object": "model", "root": "lab-chat:v1"}]})),
    "/v1/chat/completions": ("text/event-stream", sse(COMPLETION)),
    "/health": ("text/plain", ""),
    "/version": ("application/json", json.dumps({"version": "0.6.0"})),
    "/metrics": ("text/plain", "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n"),
    "/api/v1/query": ("application/json", json.dumps(PROMETHEUS_VECTOR)),
    "/collections": ("application/json", json.dumps({"result": {"collections": [{"name": "docs"}]}, "status": "ok"})),
}

# (status, body, content type) of servers that misbehave
GARBAGE = (
    (200, b"\xff\xfe\x00<html>\x00\x81garbage\xc3", "application/json"),
    (200, b'[1, "x", null, {"models": "nope"}]', "application/json"),
    (200, json.dumps({"version": 5, "models": [{"name": 1, "digest": None}], "data": {"result": "x"},
                      "status": "success", "result": [], "object": "error"}).encode(), "application/json"),
    (500, b'{"error": "%s%d boom {0}"}', "application/json"),
    (200, b"<html><body>login</body></html>", "text/html"),
    (200, b"", "application/json"),
    (200, b'{"status": "x"}\n{"error": "disk full"}\nnot json\n', "application/x-ndjson"),
)


def plausible_answer(handler):
    path = handler.path.split("?", 1)[0]
    if path in PLAUSIBLE:
        content_type, body = PLAUSIBLE[path]
        send_raw(handler, 200, body, content_type)
    else:
        send_raw(handler, 404, '{"error": "not found"}')


def answering(handler):
    server = LoopbackServer()
    server.script.routes = EveryPath(handler)
    return server.start()


class FakeHAProxy(socketserver.ThreadingTCPServer):
    """HAProxy's runtime API on loopback TCP: servers n1 (up, idle) and n2 (maint) in ai_ollama.

    ``received`` keeps what each connection sent: HAProxy takes one command per line, so more than one line in a
    connection would be a second command smuggled in through a value.
    """

    daemon_threads = True
    STATE = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
             "srv_port\n3 ai_ollama 1 n1 127.0.0.1 2 0 1 1 8080\n3 ai_ollama 2 n2 127.0.0.1 0 1 1 1 8081\n")
    STAT = "# pxname,svname,scur,qcur,status\nai_ollama,n1,0,0,UP\nai_ollama,n2,0,0,MAINT\nai_ollama,BACKEND,0,0,UP\n"

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHAProxyHandler)
        self.received = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.endpoint = "127.0.0.1:%d" % self.server_address[1]

    def answer(self, command):
        if command == "show servers state":
            return self.STATE
        if command == "show stat":
            return self.STAT
        if command.startswith("set server "):
            return "\n"
        return "Unknown command: '%s'\n" % command[:80]

    def stop(self):
        self.shutdown()
        self.server_close()


class FakeHAProxyHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        data = b""
        while b"\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                break
            data += chunk
        self.request.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            data += self.request.recv(65536)  # anything after the first line would be a second command
        self.request.setblocking(True)
        self.server.received.append(data)
        self.request.sendall(self.server.answer(data.decode("utf-8", "replace").strip()).encode())


class Servers(NamedTuple):
    http: list
    urls: list  # the plausible server first, then the garbage ones, then a closed port
    haproxy: FakeHAProxy
    haproxy_endpoints: list  # the fake, an HTTP server (not HAProxy at all), a closed port
    ports: set  # the only ports a module may connect to

    def requests(self):
        """How many requests and commands the servers have received so far."""
        return sum(len(server.requests) for server in self.http) + len(self.haproxy.received)


@contextlib.contextmanager
def running_servers():
    http = [answering(plausible_answer)]
    http += [answering(lambda handler, answer=answer: send_raw(handler, *answer)) for answer in GARBAGE]
    haproxy = FakeHAProxy()
    closed = free_port()
    try:
        yield Servers(
            http=http,
            urls=[server.url for server in http] + ["http://127.0.0.1:%d" % closed],
            haproxy=haproxy,
            haproxy_endpoints=[haproxy.endpoint, http[0].url.split("://")[1], "127.0.0.1:%d" % closed],
            ports={closed, haproxy.server_address[1], *(int(server.url.rsplit(":", 1)[1]) for server in http)},
        )
    finally:
        haproxy.stop()
        for server in http:
            server.stop()


def allow_only(monkeypatch, ports):
    """Connections reach only ``ports`` on loopback: not the network, not a real Ollama or vLLM at default ports."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        if name not in LOOPBACK_HOSTS:
            if isinstance(name, str):
                name.encode("idna")  # what the real getaddrinfo does first, and may fail with UnicodeError
            raise socket.gaierror(socket.EAI_NONAME, "hostile-input test: only loopback may be resolved (%r)" % name)
        return real_getaddrinfo(host, *args, **kwargs)

    def refuse_others(sock, address):
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        if address[0] not in LOOPBACK_HOSTS:
            raise OSError(errno.ENETUNREACH, "hostile-input test: only loopback may be reached (%r)" % (address,))
        if address[1] not in ports:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "hostile-input test: not one of the test's servers")

    def connect(sock, address):
        refuse_others(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        refuse_others(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
