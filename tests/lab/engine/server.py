"""HTTP plumbing: a threading server, one exchange object per request, routing to the API modules."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from . import admin, api, openai_compat
from .core import ApiError, Engine

log = logging.getLogger("lab.engine")

Route = Callable[["Exchange"], None]

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/"): api.root,
    ("HEAD", "/"): api.root,
    ("GET", "/api/version"): api.version,
    ("HEAD", "/api/version"): api.version,
    ("GET", "/api/tags"): api.tags,
    ("HEAD", "/api/tags"): api.tags,
    ("GET", "/api/ps"): api.ps,
    ("POST", "/api/pull"): api.pull,
    ("POST", "/api/show"): api.show,
    ("POST", "/api/copy"): api.copy,
    ("DELETE", "/api/delete"): api.delete,
    ("POST", "/api/generate"): api.generate,
    ("POST", "/api/chat"): api.chat,
    ("POST", "/api/embed"): api.embed,
    ("POST", "/api/embeddings"): api.embeddings,
    ("GET", "/v1/models"): openai_compat.list_models,
    ("POST", "/v1/chat/completions"): openai_compat.chat_completions,
    ("POST", "/v1/completions"): openai_compat.completions,
    ("POST", "/v1/embeddings"): openai_compat.embeddings,
    ("GET", admin.PATH): admin.get_faults,
    ("POST", admin.PATH): admin.set_faults,
    ("DELETE", admin.PATH): admin.clear_faults,
}
PREFIX_ROUTES: tuple[tuple[str, str, Route], ...] = (("GET", "/v1/models/", openai_compat.retrieve_model),)


def to_json(payload: object) -> bytes:
    """Compact, like Go's encoding/json, so bodies match Ollama's byte for byte where content allows."""
    return json.dumps(payload, separators=(",", ":")).encode()


class ClientGone(Exception):
    """The client closed the connection while we were still answering."""


class Exchange:
    """One request and the means to answer it, whatever the route."""

    def __init__(self, handler: Handler, engine: Engine) -> None:
        self.handler = handler
        self.engine = engine
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = unquote(parts.path)
        self.status = 0
        self.content_type = ""
        self.body = read_body(handler)

    def json_body(self) -> dict:
        if not self.body.strip():
            raise ApiError(400, "missing request body")
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"invalid request body: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid request body: expected a JSON object")
        return data

    def send_json(self, status: int, payload: object) -> None:
        self.send_bytes(status, to_json(payload), "application/json; charset=utf-8")

    def send_text(self, status: int, text: str) -> None:
        self.send_bytes(status, text.encode(), "text/plain; charset=utf-8")

    def send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        self.status = status
        self.handler.send_response(status)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Content-Length", str(len(body)))
        self.handler.end_headers()
        if self.method != "HEAD":
            self._write(body)

    def start_stream(self, content_type: str) -> None:
        """Answer 200 with a chunked body; write_chunk() sends parts as they are ready."""
        self.status = 200
        self.content_type = content_type
        self.handler.send_response(200)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Cache-Control", "no-cache")
        self.handler.send_header("Transfer-Encoding", "chunked")
        self.handler.end_headers()

    def write_chunk(self, chunk: bytes) -> None:
        if chunk:
            self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def end_stream(self) -> None:
        self._write(b"0\r\n\r\n")

    def stream(self, content_type: str, chunks: Iterable[bytes]) -> None:
        self.start_stream(content_type)
        for chunk in chunks:
            self.write_chunk(chunk)
        self.end_stream()

    def write_ndjson(self, obj: dict) -> None:
        self.write_chunk(to_json(obj) + b"\n")

    def stream_ndjson(self, objects: Iterable[dict]) -> None:
        self.stream("application/x-ndjson", (to_json(obj) + b"\n" for obj in objects))

    @property
    def started_answer(self) -> bool:
        return self.status != 0

    def _write(self, data: bytes) -> None:
        try:
            self.handler.wfile.write(data)
            self.handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ClientGone from exc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, a keep-alive client's delayed ACK
    # adds about 40 ms to every answer (real Ollama, in Go, sets TCP_NODELAY).
    disable_nagle_algorithm = True
    server_version = "ollama-lab"
    sys_version = ""
    engine: Engine

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.monotonic()
        exchange = Exchange(self, self.engine)
        route = find_route(exchange.method, exchange.path)
        try:
            if not exchange.path.startswith(admin.PATH):
                self.engine.faults.wait_while_hung()
            if route is None:
                exchange.send_text(404, "404 page not found")
            else:
                route(exchange)
        except (ClientGone, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except ApiError as exc:
            answer_error(exchange, exc)
        except Exception as exc:
            log.exception('msg="request failed" path=%s', exchange.path)
            answer_error(exchange, ApiError(500, f"internal error: {exc}"))
        log.info(
            'msg="request" method=%s path=%s status=%s duration=%.1fms client=%s',
            exchange.method,
            exchange.path,
            exchange.status,
            (time.monotonic() - started) * 1000,
            self.client_address[0],
        )

    def log_message(self, format: str, *args: object) -> None:
        log.debug('msg="%s"', format % args)


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        return read_chunked(handler.rfile)
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0  # then the route reports a missing body
    return handler.rfile.read(length) if length > 0 else b""


def read_chunked(stream) -> bytes:
    parts = []
    while True:
        size = int(stream.readline().split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(stream.read(size))
        stream.readline()


def find_route(method: str, path: str) -> Route | None:
    route = ROUTES.get((method, path))
    if route is None and path != "/":
        route = ROUTES.get((method, path.rstrip("/")))
    if route is None:
        for route_method, prefix, prefix_route in PREFIX_ROUTES:
            if method == route_method and path.startswith(prefix) and len(path) > len(prefix):
                return prefix_route
    return route


def answer_error(exchange: Exchange, error: ApiError) -> None:
    if exchange.started_answer:
        end_broken_stream(exchange, error)
        return
    body = openai_compat.error_body(error) if exchange.path.startswith("/v1/") else {"error": error.message}
    try:
        exchange.send_json(error.status, body)
    except (ClientGone, BrokenPipeError, ConnectionResetError):
        exchange.handler.close_connection = True


def end_broken_stream(exchange: Exchange, error: ApiError) -> None:
    """A failure after the 200 went out: say so in-band where the format allows, then drop the connection."""
    exchange.handler.close_connection = True
    if exchange.content_type != "application/x-ndjson":
        return
    try:
        exchange.write_ndjson({"error": error.message})
        exchange.end_stream()
    except ClientGone:
        pass


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class EngineServer:
    """The engine on a listening socket, servable in a background thread (tests) or the foreground (CLI)."""

    def __init__(self, engine: Engine, host: str | None = None, port: int | None = None) -> None:
        self.engine = engine
        handler = type("BoundHandler", (Handler,), {"engine": engine})
        bind_host = engine.config.host if host is None else host
        bind_port = engine.config.port if port is None else port
        server_class = _IPv6Server if ":" in bind_host else ThreadingHTTPServer
        self.httpd = server_class((bind_host, bind_port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        log.info(
            'msg="Listening on %s:%s (version %s)" models=%s',
            *self.httpd.server_address[:2],
            self.engine.config.version,
            self.engine.config.models_dir,
        )
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> EngineServer:
        self._thread = threading.Thread(target=self.serve_forever, name="lab-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.engine.faults.clear()  # releases requests parked by a hang fault
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
