"""Real HTTP servers on 127.0.0.1 whose answers a test scripts, including the ways servers misbehave."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_LIMIT_SECONDS = 30


class ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _dispatch(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        script = self.server.script
        script.record(self.command, self.path, self.headers, body)
        handler = script.routes.get((self.command, self.path.split("?", 1)[0]))
        if handler is None:
            send_json(self, 404, {"error": "no route for %s %s" % (self.command, self.path)})
            return
        handler(self)

    do_GET = do_POST = do_DELETE = do_HEAD = _dispatch


class Script:
    def __init__(self):
        self.routes = {}
        self.requests = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def record(self, method, path, headers, body):
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": dict(headers), "body": body})

    def count(self, method, path):
        return sum(1 for request in self.requests if request["method"] == method and request["path"] == path)


class LoopbackServer:
    """Routes are ``(method, path) -> handler(request_handler)``; handlers below cover the usual answers."""

    def __init__(self, port=0, ssl_context=None):
        self.script = Script()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), ScriptedHandler)
        self._server.daemon_threads = True
        self._server.script = self.script
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        scheme = "https" if ssl_context is not None else "http"
        self.url = "%s://127.0.0.1:%d" % (scheme, self._server.server_address[1])

    def route(self, method, path, handler):
        self.script.routes[(method, path)] = handler
        return self

    @property
    def requests(self):
        return self.script.requests

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.script.release.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def free_port():
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- answers -----------------------------------------------------------------------------------------

def send_raw(handler, status, body, content_type="application/json"):
    payload = body if isinstance(body, bytes) else body.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def send_json(handler, status, document):
    send_raw(handler, status, json.dumps(document))


def json_answer(document, status=200):
    return lambda handler: send_json(handler, status, document)


def raw_answer(body, status=200, content_type="application/json"):
    return lambda handler: send_raw(handler, status, body, content_type)


def _start_chunked(handler, content_type):
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def _write_chunk(handler, text):
    data = text.encode()
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    handler.wfile.flush()


def stream_answer(lines, content_type="application/x-ndjson", then_close=False):
    """Stream ``lines`` chunk by chunk; with ``then_close`` the connection drops before the last chunk."""

    def answer(handler):
        _start_chunked(handler, content_type)
        for line in lines:
            _write_chunk(handler, line + "\n")
        if then_close:
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler.wfile.write(b"0\r\n\r\n")

    return answer


def ndjson_answer(events, then_close=False):
    return stream_answer([json.dumps(event) for event in events], then_close=then_close)


def hang_answer(handler):
    """Read the request, then never answer (until the server stops)."""
    handler.server.script.release.wait(HANG_LIMIT_SECONDS)
    handler.close_connection = True


def close_without_answer(handler):
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)
