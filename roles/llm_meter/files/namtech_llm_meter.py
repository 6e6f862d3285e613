# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""namtech LLM meter: a streaming reverse proxy in front of the engine that counts tokens per model.

Ollama exports no token counters. The meter listens where clients (and HAProxy) connect, forwards every
request to the engine unchanged and every answer back unchanged, byte for byte, as the bytes arrive (NDJSON and
server-sent event streams are never held back), and reads the token counts as the answer passes: Ollama's final
objects (``prompt_eval_count``, ``eval_count``) and OpenAI's ``usage`` objects. It exports them, with request
counts and latencies, on its own ``/metrics`` (role namtech.internal_ai.llm_meter).

HTTP/1.1 with keep-alive, chunked bodies, ``Expect: 100-continue`` and protocol upgrades; one engine connection
per client connection. Python 3.9+ standard library (asyncio) and prometheus_client 0.16+.
Usage: python3 namtech_llm_meter.py --config /etc/namtech/llm_meter.json   (or --check-config FILE)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Counters would also export a *_created series per label set; dashboards and alerts do not use them.
os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "true")

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.process_collector import ProcessCollector
except ImportError:  # reported by main(): the role installs python3-prometheus-client
    CollectorRegistry = None

log = logging.getLogger("namtech_llm_meter")

ENGINES = ("ollama", "vllm")
DEFAULT_CONFIG_PATH = "/etc/namtech/llm_meter.json"
HEAD_LIMIT = 64 * 1024
COPY_CHUNK = 64 * 1024
REQUEST_CAPTURE_LIMIT = 1024 * 1024
JSON_ANSWER_LIMIT = 8 * 1024 * 1024
LINE_LIMIT = 1024 * 1024
METRICS_READ_TIMEOUT = 10
LISTEN_BACKLOG = 1024  # load balancers open many connections at once; the kernel caps it at somaxconn
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
# Answers whose token counts are read; every other path is only passed through and counted as a request.
COUNTED_PATHS = ("/api/generate", "/api/chat", "/api/embed", "/v1/chat/completions", "/v1/completions",
                 "/v1/embeddings")
KNOWN_PATHS = (*COUNTED_PATHS, "/", "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/pull", "/api/push",
               "/api/copy", "/api/delete", "/api/create", "/api/embeddings", "/v1/models", "/health", "/version",
               "/metrics")
PRECREATED_PATHS = ("/api/generate", "/api/chat", "/v1/chat/completions")
CLIENT_GONE_CODE = "499"  # nginx's convention: the client closed the connection before the answer was complete
ERROR_STAGES = ("connect", "upstream_timeout", "upstream_closed", "client_gone", "bad_request", "internal")
STATUS_REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large", 502: "Bad Gateway",
                  504: "Gateway Timeout"}
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,300})"')


# -- configuration ---------------------------------------------------------------------------------------------

class ConfigError(Exception):
    """The configuration file cannot be used; the text says which setting and why."""


@dataclass(frozen=True)
class Config:
    listen_address: str
    upstream_url: str
    listen_port: int = 11434
    metrics_address: str = ""
    metrics_port: int = 9779
    engine: str = "ollama"
    models: tuple = ()
    upstream_host_header: str = ""
    connect_timeout_seconds: float = 5.0
    upstream_timeout_seconds: float = 600.0
    idle_timeout_seconds: float = 300.0

    @property
    def upstream(self):
        parts = urlsplit(self.upstream_url)
        return parts.hostname, parts.port or 80

    @property
    def metrics_host(self):
        return self.metrics_address or self.listen_address


def _is_every_address(value):
    return value in ("", "0.0.0.0", "::", "*")  # noqa: S104 - the values refused


_NUMBER = (int, float)
CONFIG_FIELDS = {
    "listen_address": (str, lambda value: not _is_every_address(value),
                       "this node's private address (never every address)"),
    "listen_port": (int, lambda value: 0 <= value < 65536, "a TCP port"),
    "upstream_url": (str, lambda value: urlsplit(value).scheme == "http" and bool(urlsplit(value).hostname)
                     and urlsplit(value).path in ("", "/"), "an http:// URL with a host and no path (the engine)"),
    "metrics_address": (str, lambda value: value == "" or not _is_every_address(value),
                        "empty (the listen address) or a private address"),
    "metrics_port": (int, lambda value: 0 <= value < 65536, "a TCP port"),
    "engine": (str, lambda value: value in ENGINES, "one of %s" % ", ".join(ENGINES)),
    "models": (list, lambda value: all(isinstance(item, str) and item for item in value),
               "a list of model names"),
    "upstream_host_header": (str, lambda value: "\r" not in value and "\n" not in value,
                             "empty (pass the client's Host through) or a host[:port]"),
    "connect_timeout_seconds": (_NUMBER, lambda value: value > 0, "a number of seconds above 0"),
    "upstream_timeout_seconds": (_NUMBER, lambda value: value > 0, "a number of seconds above 0"),
    "idle_timeout_seconds": (_NUMBER, lambda value: value > 0, "a number of seconds above 0"),
}
REQUIRED_FIELDS = ("listen_address", "upstream_url")


def config_from_document(document):
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a JSON object, not %s" % type(document).__name__)
    unknown = sorted(set(document) - set(CONFIG_FIELDS))
    if unknown:
        raise ConfigError("unknown setting(s) %s; known settings: %s" % (", ".join(unknown), ", ".join(CONFIG_FIELDS)))
    missing = [key for key in REQUIRED_FIELDS if key not in document]
    if missing:
        raise ConfigError("missing setting(s): %s" % ", ".join(missing))
    for key, value in document.items():
        kinds, check, meaning = CONFIG_FIELDS[key]
        wrong_type = not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool)
        if wrong_type or not check(value):
            raise ConfigError("%s must be %s (got %s)" % (key, meaning, json.dumps(value)))
    config = Config(**dict(document, models=tuple(document.get("models", ()))))
    same_socket = (config.metrics_host, config.metrics_port) == (config.listen_address, config.listen_port)
    if same_socket and config.listen_port != 0:
        raise ConfigError("metrics_port must differ from listen_port on the same address (both are %d)"
                          % config.listen_port)
    if config.upstream == (config.listen_address, config.listen_port):
        raise ConfigError("upstream_url %s is the meter's own address: move the engine to another address or port"
                          % config.upstream_url)
    return config


def load_config(path):
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise ConfigError("%s is not valid JSON: %s" % (path, exc)) from None
    try:
        return config_from_document(document)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None


# -- HTTP messages ---------------------------------------------------------------------------------------------

class BadMessage(Exception):
    """A request or answer that is not HTTP/1.x as this proxy can frame it."""


class ClientGone(Exception):
    """The client closed its connection (or stopped reading) before the exchange was over."""


class UpstreamGone(Exception):
    """The engine closed its connection, or was silent for longer than upstream_timeout_seconds."""

    def __init__(self, message, timed_out=False):
        super().__init__(message)
        self.timed_out = timed_out


@dataclass
class Head:
    """A request or status line with its headers, and the exact bytes they came as."""

    raw: bytes
    start: list
    headers: list

    def values(self, name):
        return [value for key, value in self.headers if key == name]

    def value(self, name):
        found = self.values(name)
        return found[-1] if found else None

    def tokens(self, name):
        return [item.strip().lower() for value in self.values(name) for item in value.split(",") if item.strip()]


def parse_head(raw):
    lines = raw.rstrip(b"\r\n").split(b"\r\n") if b"\r\n" in raw else raw.rstrip(b"\n").split(b"\n")
    try:
        start = lines[0].decode("latin-1").split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, separator, value = line.decode("latin-1").partition(":")
            if not separator or not name or name != name.strip():
                raise BadMessage("malformed header line %r" % line[:100])
            headers.append((name.lower(), value.strip()))
    except UnicodeDecodeError:
        raise BadMessage("undecodable head") from None
    return Head(raw, start, headers)


def parse_request_head(raw):
    head = parse_head(raw)
    if len(head.start) != 3 or not head.start[2].startswith("HTTP/1."):
        raise BadMessage("malformed request line %r" % " ".join(head.start)[:100])
    return head


def parse_response_head(raw):
    head = parse_head(raw)
    if len(head.start) < 2 or not head.start[0].startswith("HTTP/1.") or not head.start[1].isdigit():
        raise BadMessage("malformed status line %r" % " ".join(head.start)[:100])
    return head


def body_framing(head, *, response_to=None):
    """("chunked", None), ("length", n) or ("close", None): how the body after ``head`` ends.

    ``response_to`` is the request's method when ``head`` is an answer.
    """
    if response_to is not None:
        status = int(head.start[1])
        if response_to == "HEAD" or status < 200 or status in (204, 304):
            return "length", 0
    encodings = head.tokens("transfer-encoding")
    if encodings:
        if encodings[-1] == "chunked":
            return "chunked", None
        if response_to is None:
            raise BadMessage("a request body with Transfer-Encoding %s and not chunked" % ",".join(encodings))
        return "close", None
    lengths = {value.strip() for value in head.values("content-length")}
    if len(lengths) > 1:
        raise BadMessage("conflicting Content-Length headers")
    if lengths:
        length = lengths.pop()
        if not length.isdigit():
            raise BadMessage("invalid Content-Length %r" % length)
        return "length", int(length)
    return ("close", None) if response_to is not None else ("length", 0)


def wants_keep_alive(head, version):
    options = head.tokens("connection")
    if version == "HTTP/1.0":
        return "keep-alive" in options
    return "close" not in options


def with_host(head, host):
    """The head's bytes with its Host header replaced by ``host`` (the only change the meter can make)."""
    lines = head.raw.rstrip(b"\r\n").split(b"\r\n")
    kept = [line for line in lines[1:] if not line.lower().startswith(b"host:")]
    return b"\r\n".join([lines[0], b"Host: " + host.encode("latin-1"), *kept]) + b"\r\n\r\n"


def normalize_path(target):
    path = target.split("?", 1)[0]
    if "://" in path:  # absolute-form request target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = path.rstrip("/") or "/"
    return path if path in KNOWN_PATHS else "other"


def canonical_model_name(name):
    """An Ollama name with its explicit tag, as /api/tags lists it (``assistant`` -> ``assistant:latest``)."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def error_document(path, message):
    """An error body in the shape the engine's own errors have on that path."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    return {"error": message}


# -- reading token counts from answers -------------------------------------------------------------------------

class UsageParser:
    """The model and token counts of an answer, read as its bytes pass (the bytes themselves are not changed).

    ``ndjson``: Ollama's streamed objects, the final one (``done``) with ``prompt_eval_count`` and ``eval_count``.
    ``sse``: OpenAI's ``data:`` events, the last with ``usage`` when the client asked for it.
    ``json``: one object, Ollama's final answer or OpenAI's with ``usage``.
    """

    def __init__(self, kind):
        self.kind = kind
        self.model = None
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.counted = False
        self.overflow = False
        self._buffer = bytearray()

    def feed(self, data):
        if self.overflow:
            return
        self._buffer += data
        if self.kind == "json":
            if len(self._buffer) > JSON_ANSWER_LIMIT:
                self._give_up()
            return
        start = 0
        while True:
            newline = self._buffer.find(b"\n", start)
            if newline < 0:
                break
            self._line(bytes(self._buffer[start:newline]))
            start = newline + 1
        del self._buffer[:start]
        if len(self._buffer) > LINE_LIMIT:
            self._give_up()

    def finish(self):
        if self.overflow:
            return
        if self.kind == "json":
            self._document(bytes(self._buffer))
        elif self._buffer.strip():
            self._line(bytes(self._buffer))
        self._buffer = bytearray()

    def _give_up(self):
        self.overflow = True
        self._buffer = bytearray()

    def _line(self, line):
        line = line.strip()
        if self.kind == "sse":
            if not line.startswith(b"data:"):
                return
            line = line[len(b"data:"):].strip()
            if line == b"[DONE]" or (self.model is not None and b"usage" not in line):
                return
        elif self.model is not None and b"_count" not in line:
            return  # a token of the stream: only the first (model) and the final (counts) objects matter
        self._document(line)

    def _document(self, raw):
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return
        if not isinstance(document, dict):
            return
        if self.model is None and isinstance(document.get("model"), str):
            self.model = document["model"]
        self._add(document.get("prompt_eval_count"), document.get("eval_count"))
        usage = document.get("usage")
        if isinstance(usage, dict):
            self._add(usage.get("prompt_tokens"), usage.get("completion_tokens"))

    def _add(self, prompt, generated):
        valid = [value for value in (prompt, generated) if isinstance(value, int) and not isinstance(value, bool)]
        if not valid:
            return
        self.counted = True
        if isinstance(prompt, int) and not isinstance(prompt, bool):
            self.prompt_tokens += prompt
        if isinstance(generated, int) and not isinstance(generated, bool):
            self.generated_tokens += generated


def parser_for(path, head):
    """The parser for an answer on ``path``, or None when its counts cannot or need not be read."""
    if path not in COUNTED_PATHS:
        return None
    if any(encoding != "identity" for encoding in head.tokens("content-encoding")):
        return None
    content_type = (head.value("content-type") or "").lower()
    if "text/event-stream" in content_type:
        return UsageParser("sse")
    if "ndjson" in content_type:
        return UsageParser("ndjson")
    return UsageParser("json")


def request_model(captured, complete):
    """The ``model`` a request body names (from its first megabyte when it is longer)."""
    if not captured:
        return None
    if complete:
        try:
            document = json.loads(captured.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            document = None
        if isinstance(document, dict):
            model = document.get("model")
            return model if isinstance(model, str) and model else None
    match = _MODEL_FIELD.search(captured)
    if match is None:
        return None
    try:
        return json.loads(b'"' + match.group(1) + b'"')
    except ValueError:
        return None


# -- streams ---------------------------------------------------------------------------------------------------

class Source:
    """Reads one side of the exchange; failures become ``error`` (ClientGone or UpstreamGone)."""

    def __init__(self, reader, error, timeout=None):
        self.reader = reader
        self.error = error
        self.timeout = timeout

    async def _wait(self, operation):
        try:
            if self.timeout is None:
                return await operation
            return await asyncio.wait_for(operation, self.timeout)
        except asyncio.TimeoutError:
            raise self.failure("no data for %gs" % self.timeout, timed_out=True) from None
        except asyncio.IncompleteReadError:
            raise self.failure("the connection closed in the middle of a message") from None
        except asyncio.LimitOverrunError:
            raise self.failure("a line longer than %d bytes" % HEAD_LIMIT) from None
        except (ConnectionError, OSError) as exc:
            raise self.failure(exc.strerror or str(exc) or type(exc).__name__) from None

    def failure(self, message, timed_out=False):
        if self.error is UpstreamGone:
            return UpstreamGone(message, timed_out)
        return self.error(message)

    async def read(self, size):
        return await self._wait(self.reader.read(size))

    async def readexactly(self, size):
        return await self._wait(self.reader.readexactly(size))

    async def readline(self):
        return await self._wait(self.reader.readuntil(b"\n"))


class Sink:
    """Writes to one side of the exchange; failures become ``error``."""

    def __init__(self, writer, error):
        self.writer = writer
        self.error = error

    async def write(self, data):
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise self.error(str(exc) or type(exc).__name__) from None


async def copy_body(source, sink, kind, length, on_data=None):
    """Copy one body framed as ``kind`` (see body_framing), forwarding every piece as soon as it is read.

    ``on_data`` sees the payload only (without the chunked framing).
    """
    if kind == "length":
        remaining = length
        while remaining:
            data = await source.read(min(COPY_CHUNK, remaining))
            if not data:
                raise source.failure("the connection closed %d bytes before the end of the body" % remaining)
            remaining -= len(data)
            if on_data:
                on_data(data)
            await sink.write(data)
    elif kind == "chunked":
        await copy_chunks(source, sink, on_data)
    else:
        while True:
            data = await source.read(COPY_CHUNK)
            if not data:
                return
            if on_data:
                on_data(data)
            await sink.write(data)


async def copy_chunks(source, sink, on_data):
    while True:
        size_line = await source.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise source.failure("malformed chunk size line %r" % size_line[:40]) from None
        if size == 0:
            trailer = size_line
            while True:
                line = await source.readline()
                trailer += line
                if line in (b"\r\n", b"\n"):
                    break
            await sink.write(trailer)
            return
        if size + 2 <= COPY_CHUNK:
            data = await source.readexactly(size + 2)
            if on_data:
                on_data(data[:size])
            await sink.write(size_line + data)
            continue
        await sink.write(size_line)
        remaining = size
        while remaining:
            data = await source.readexactly(min(COPY_CHUNK, remaining))
            remaining -= len(data)
            if on_data:
                on_data(data)
            await sink.write(data)
        await sink.write(await source.readexactly(2))


async def read_head(source):
    """A message head (through the blank line); None when the connection closed cleanly before one started."""
    try:
        if source.timeout is None:
            raw = await source.reader.readuntil(b"\r\n\r\n")
        else:
            raw = await asyncio.wait_for(source.reader.readuntil(b"\r\n\r\n"), source.timeout)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise source.failure("the connection closed in the middle of a message head") from None
    except asyncio.LimitOverrunError:
        raise BadMessage("a message head longer than %d bytes" % HEAD_LIMIT) from None
    except asyncio.TimeoutError:
        raise source.failure("no message head for %gs" % source.timeout, timed_out=True) from None
    except (ConnectionError, OSError) as exc:
        raise source.failure(exc.strerror or str(exc) or type(exc).__name__) from None
    return raw.lstrip(b"\r\n")


def os_reason(exc):
    """asyncio words a refused connection as "Connect call failed (address)": say what the system says."""
    return os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))


async def close_writer(writer):
    if writer is None:
        return
    writer.close()
    with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
        await writer.wait_closed()


# -- metrics ---------------------------------------------------------------------------------------------------

class MeterMetrics:
    def __init__(self, registry, models):
        self.prompt_tokens = Counter("namtech_llm_prompt_tokens", "Prompt tokens the engine read, by model.",
                                     ["model"], registry=registry)
        self.generated_tokens = Counter("namtech_llm_generated_tokens", "Tokens the engine generated, by model.",
                                        ["model"], registry=registry)
        self.requests = Counter("namtech_llm_requests", "Requests through the meter by model, answer code and path "
                                "(499: the client left before the answer was complete).",
                                ["model", "code", "path"], registry=registry)
        self.uncounted = Counter("namtech_llm_uncounted_requests", "Successful answers on a counted path whose "
                                 "token counts could not be read (e.g. OpenAI streams without include_usage).",
                                 ["model", "path"], registry=registry)
        self.duration = Histogram("namtech_llm_request_duration_seconds", "Duration of inference requests, from "
                                  "the request's head to the answer's last byte.", ["model"],
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.ttft = Histogram("namtech_llm_request_ttft_seconds", "Time from an inference request's head to the "
                              "first body byte of its 200 answer.", ["model"], buckets=TTFT_BUCKETS,
                              registry=registry)
        self.in_flight = Gauge("namtech_llm_in_flight_requests", "Requests being answered now.", registry=registry)
        self.connections = Gauge("namtech_llm_meter_open_connections", "Open connections by side.", ["side"],
                                 registry=registry)
        self.errors = Counter("namtech_llm_meter_errors", "Failed exchanges by stage.", ["stage"], registry=registry)
        for stage in ERROR_STAGES:
            self.errors.labels(stage)
        for side in ("client", "upstream"):
            self.connections.labels(side)
        for model in models:
            self.precreate(model)

    def precreate(self, model):
        """Series at 0, so that increase() sees the first requests of a model."""
        self.prompt_tokens.labels(model)
        self.generated_tokens.labels(model)
        self.duration.labels(model)
        self.ttft.labels(model)
        for path in PRECREATED_PATHS:
            self.requests.labels(model, "200", path)


@dataclass
class RequestBody:
    """The request body as it was forwarded: its raw bytes (resent once on a fresh engine connection when a kept
    connection turns out closed) and its payload (for the model it names), each kept up to a megabyte."""

    raw: bytearray = field(default_factory=bytearray)
    payload: bytearray = field(default_factory=bytearray)
    complete: bool = False
    truncated: bool = False

    def keep_raw(self, data):
        if len(self.raw) + len(data) > REQUEST_CAPTURE_LIMIT:
            self.truncated = True
            self.raw = bytearray()
        elif not self.truncated:
            self.raw += data

    def keep_payload(self, data):
        room = REQUEST_CAPTURE_LIMIT - len(self.payload)
        if room > 0:
            self.payload += data[:room]

    @property
    def model(self):
        return request_model(bytes(self.payload), self.complete and len(self.payload) < REQUEST_CAPTURE_LIMIT)


@dataclass
class Exchange:
    """What the meter learnt about one request, recorded when it ends."""

    path: str
    started: float
    body: RequestBody = field(default_factory=RequestBody)
    code: str = ""
    parser: UsageParser | None = None
    first_byte: float | None = None
    ended: float | None = None


class RawSink:
    """A Sink that also keeps what it wrote."""

    def __init__(self, sink, keep):
        self.sink = sink
        self.keep = keep

    async def write(self, data):
        self.keep(data)
        await self.sink.write(data)


@dataclass
class Call:
    """One request on its way: the client's side, the engine connection, and the task sending the body."""

    request: Head
    exchange: Exchange
    client: Source
    sink: Sink
    upstream: Upstream | None
    framing: tuple = ("length", 0)
    pump: asyncio.Future | None = None


class NullSink:
    async def write(self, data):
        del data


class Upstream:
    """The engine connection that serves one client connection."""

    def __init__(self, reader, writer, metrics):
        self.reader = reader
        self.writer = writer
        self.metrics = metrics
        self.used = False
        metrics.connections.labels("upstream").inc()

    @property
    def stale(self):
        return self.writer is None or self.reader.at_eof() or self.writer.is_closing()

    async def close(self):
        if self.writer is not None:
            writer, self.writer = self.writer, None
            self.metrics.connections.labels("upstream").dec()
            await close_writer(writer)


def finished_cleanly(task):
    return task.done() and not task.cancelled() and task.exception() is None


async def cancel(task):
    """Stop ``task`` if it still runs, and collect its outcome either way (no "exception never retrieved")."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, ClientGone, UpstreamGone):
        await task


# -- the proxy -------------------------------------------------------------------------------------------------

class Meter:
    """The proxy and its /metrics endpoint, on one event loop."""

    def __init__(self, config, registry=None):
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(ProcessCollector(registry=None))
        self.known_models = {self.model_label(model) for model in config.models}
        self.metrics = MeterMetrics(self.registry, sorted(self.known_models))
        self.proxy_server = None
        self.metrics_server = None
        self._client_tasks = set()
        self._unreachable = None  # why the engine could not be reached last time, None while it can

    # -- lifecycle

    async def start(self):
        self.proxy_server = await asyncio.start_server(self.serve_client, self.config.listen_address,
                                                       self.config.listen_port, limit=HEAD_LIMIT,
                                                       backlog=LISTEN_BACKLOG)
        self.metrics_server = await asyncio.start_server(self.serve_metrics, self.config.metrics_host,
                                                         self.config.metrics_port, limit=HEAD_LIMIT)
        return self

    @property
    def proxy_port(self):
        return self.proxy_server.sockets[0].getsockname()[1]

    @property
    def metrics_port(self):
        return self.metrics_server.sockets[0].getsockname()[1]

    async def stop(self):
        for server in (self.proxy_server, self.metrics_server):
            if server is not None:
                server.close()
        for task in list(self._client_tasks):
            task.cancel()
        if self._client_tasks:
            await asyncio.wait(list(self._client_tasks), timeout=5)
        for server in (self.proxy_server, self.metrics_server):
            if server is not None:
                await server.wait_closed()

    # -- labels and metrics

    def model_label(self, name):
        return canonical_model_name(name) if self.config.engine == "ollama" else name

    def label_for(self, exchange):
        """The model label. An answer names a model the engine has; a request may name anything, so a name the
        meter has not seen in an answer (nor in its configuration) becomes ``other``: no series at a client's will."""
        answered = exchange.parser.model if exchange.parser is not None else None
        if answered:
            label = self.model_label(answered)
            self.known_models.add(label)
            return label
        requested = exchange.body.model
        if requested:
            label = self.model_label(requested)
            return label if label in self.known_models else "other"
        return ""

    def record(self, exchange):
        metrics = self.metrics
        model = self.label_for(exchange)
        metrics.requests.labels(model, exchange.code or CLIENT_GONE_CODE, exchange.path).inc()
        if exchange.path not in COUNTED_PATHS:
            return
        metrics.duration.labels(model).observe((exchange.ended or time.monotonic()) - exchange.started)
        if exchange.code == "200" and exchange.first_byte is not None:
            metrics.ttft.labels(model).observe(exchange.first_byte - exchange.started)
        parser = exchange.parser
        if parser is not None and parser.counted:
            metrics.prompt_tokens.labels(model).inc(parser.prompt_tokens)
            metrics.generated_tokens.labels(model).inc(parser.generated_tokens)
        elif exchange.code == "200":
            metrics.uncounted.labels(model, exchange.path).inc()

    # -- one client connection

    async def serve_client(self, reader, writer):
        task = asyncio.current_task()
        self._client_tasks.add(task)
        self.metrics.connections.labels("client").inc()
        client = Source(reader, ClientGone)
        sink = Sink(writer, ClientGone)
        upstream = None
        try:
            keep = True
            while keep:
                client.timeout = self.config.idle_timeout_seconds
                try:
                    raw = await read_head(client)
                    if raw is None:
                        break
                    request = parse_request_head(raw)
                except BadMessage as exc:
                    self.metrics.errors.labels("bad_request").inc()
                    status = 431 if "longer than" in str(exc) else 400
                    await self.answer_error(sink, status, "/", "llm_meter: bad request: %s" % exc)
                    break
                except ClientGone:
                    break
                # The body of a request and the pauses inside it are bounded like the engine's answers.
                client.timeout = self.config.upstream_timeout_seconds
                keep, upstream = await self.forward(request, client, sink, upstream)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must cost one connection, not the daemon; the journal gets the traceback
            log.exception("a client connection failed")
            self.metrics.errors.labels("internal").inc()
        finally:
            if upstream is not None:
                await upstream.close()
            await close_writer(writer)
            self.metrics.connections.labels("client").dec()
            self._client_tasks.discard(task)

    async def forward(self, request, client, sink, upstream):
        """Pass one request and its answer; return (keep the client connection, the engine connection to reuse)."""
        call = Call(request, Exchange(normalize_path(request.start[1]), time.monotonic()), client, sink, upstream)
        self.metrics.in_flight.inc()
        try:
            try:
                call.framing = body_framing(request)
            except BadMessage as exc:
                self.metrics.errors.labels("bad_request").inc()
                call.exchange.code = "400"
                await self.answer_error(sink, 400, call.exchange.path, "llm_meter: bad request: %s" % exc)
                return False, upstream
            answer = await self.send(call)
            if answer is None:
                return False, call.upstream
            return await self.relay(call, answer)
        finally:
            await cancel(call.pump)
            self.record(call.exchange)
            self.metrics.in_flight.dec()

    async def send(self, call):
        """Send the request and return the answer's head; None when that failed (the client then got an error
        answer, or is gone, and ``call.upstream`` is None)."""
        body = call.exchange.body
        for attempt in (1, 2):
            if call.upstream is not None and call.upstream.stale:
                await call.upstream.close()
                call.upstream = None
            if call.upstream is None:
                call.upstream = await self.connect(call)
                if call.upstream is None:
                    return None
            reused, call.upstream.used = call.upstream.used, True
            try:
                call.pump = self.send_request(call, resend=attempt == 2)
                return await self.read_answer_head(call)
            except UpstreamGone as exc:
                await call.upstream.close()
                call.upstream = None
                # A kept connection the engine closed meanwhile: send the request again once, on a new one.
                if attempt == 1 and reused and not exc.timed_out and finished_cleanly(call.pump) \
                        and body.complete and not body.truncated:
                    continue
                await cancel(call.pump)
                await self.upstream_failed(call.exchange, call.sink, exc)
                return None
            except ClientGone:
                self.metrics.errors.labels("client_gone").inc()
                await cancel(call.pump)
                await call.upstream.close()
                call.upstream = None
                return None
        return None

    async def connect(self, call):
        host, port = self.config.upstream
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=HEAD_LIMIT),
                                                    self.config.connect_timeout_seconds)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = "no connection within %gs" % self.config.connect_timeout_seconds \
                if isinstance(exc, asyncio.TimeoutError) else os_reason(exc)
            self.metrics.errors.labels("connect").inc()
            if self._unreachable != reason:
                log.warning("cannot reach the engine at %s: %s", self.config.upstream_url, reason)
                self._unreachable = reason
            await self.discard_request_body(call)
            call.exchange.code = "502"
            await self.answer_error(call.sink, 502, call.exchange.path, "llm_meter: cannot reach the engine at %s "
                                    "(%s); check that the engine runs" % (self.config.upstream_url, reason))
            return None
        if self._unreachable is not None:
            log.info("the engine at %s answers again", self.config.upstream_url)
            self._unreachable = None
        return Upstream(reader, writer, self.metrics)

    def send_request(self, call, resend):
        """Send the head now and the body in a task, so that an interim 100 Continue can come back meanwhile."""
        upstream_sink = Sink(call.upstream.writer, UpstreamGone)
        body = call.exchange.body
        head = with_host(call.request, self.config.upstream_host_header) if self.config.upstream_host_header \
            else call.request.raw

        async def pump():
            await upstream_sink.write(head)
            if resend:
                await upstream_sink.write(bytes(body.raw))
                return
            kind, length = call.framing
            await copy_body(call.client, RawSink(upstream_sink, body.keep_raw), kind, length, body.keep_payload)
            body.complete = True

        return asyncio.ensure_future(pump())

    async def read_answer_head(self, call):
        """The final answer's head; interim 1xx answers (100 Continue) go to the client on the way."""
        source = Source(call.upstream.reader, UpstreamGone, self.config.upstream_timeout_seconds)
        while True:
            head_task = asyncio.ensure_future(read_head(source))
            await asyncio.wait({head_task, call.pump}, return_when=asyncio.FIRST_COMPLETED)
            if not head_task.done() and call.pump.exception() is not None:
                await cancel(head_task)
                raise call.pump.exception()
            try:
                raw = await head_task
            except BadMessage as exc:
                raise UpstreamGone("the engine's answer is not HTTP: %s" % exc) from None
            if raw is None:
                raise UpstreamGone("the engine closed the connection without an answer")
            try:
                answer = parse_response_head(raw)
            except BadMessage as exc:
                raise UpstreamGone("the engine's answer is not HTTP: %s" % exc) from None
            status = int(answer.start[1])
            if status == 101 or status >= 200:
                return answer
            await call.sink.write(raw)

    async def relay(self, call, answer):
        """Pass the answer to the client as it arrives; return (keep the client connection, engine connection)."""
        request, exchange, upstream = call.request, call.exchange, call.upstream
        method, status = request.start[0], int(answer.start[1])
        exchange.code = str(status)
        try:
            kind, length = body_framing(answer, response_to=method)
        except BadMessage as exc:
            await upstream.close()
            await self.upstream_failed(exchange, call.sink, UpstreamGone("the engine's answer cannot be framed: %s"
                                                                         % exc))
            return False, None
        try:
            await call.sink.write(answer.raw)
            if status == 101:
                await self.tunnel(call)
                await upstream.close()
                return False, None
            exchange.parser = parser_for(exchange.path, answer) if status == 200 else None
            source = Source(upstream.reader, UpstreamGone, self.config.upstream_timeout_seconds)
            await copy_body(source, call.sink, kind, length, self.observer(exchange))
            exchange.ended = time.monotonic()
            if exchange.parser is not None:
                exchange.parser.finish()
        except ClientGone:
            # Closing the engine's connection tells it to stop generating for nobody.
            exchange.code = ""
            self.metrics.errors.labels("client_gone").inc()
            await upstream.close()
            return False, None
        except UpstreamGone as exc:
            self.metrics.errors.labels("upstream_timeout" if exc.timed_out else "upstream_closed").inc()
            log.warning("the engine's answer to %s %s broke off: %s", method, exchange.path, exc)
            await upstream.close()
            return False, None
        if not finished_cleanly(call.pump):
            # The engine answered before it had read the whole request: neither connection is in a known state.
            await upstream.close()
            return False, None
        if kind == "close" or not wants_keep_alive(answer, answer.start[0]):
            await upstream.close()
            upstream = None
        return kind != "close" and wants_keep_alive(request, request.start[2]), upstream

    @staticmethod
    def observer(exchange):
        def observe(data):
            if exchange.first_byte is None and data:
                exchange.first_byte = time.monotonic()
            if exchange.parser is not None:
                exchange.parser.feed(data)
        return observe

    @staticmethod
    async def tunnel(call):
        """After 101 Switching Protocols bytes flow both ways, untouched, until one side closes."""
        upstream_source = Source(call.upstream.reader, UpstreamGone)
        upstream_sink = Sink(call.upstream.writer, UpstreamGone)
        client_source = Source(call.client.reader, ClientGone)

        async def one_way(source, destination):
            with contextlib.suppress(ClientGone, UpstreamGone):
                await copy_body(source, destination, "close", None)

        directions = [asyncio.ensure_future(one_way(client_source, upstream_sink)),
                      asyncio.ensure_future(one_way(upstream_source, call.sink))]
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for direction in directions:
            await cancel(direction)

    @staticmethod
    async def discard_request_body(call):
        """Read a small request body the engine will never see, so that the client reads the error answer."""
        kind, length = call.framing
        body = call.exchange.body
        if kind == "length" and length <= REQUEST_CAPTURE_LIMIT:
            with contextlib.suppress(ClientGone):
                await copy_body(call.client, NullSink(), kind, length, body.keep_payload)
                body.complete = True

    async def upstream_failed(self, exchange, sink, exc):
        status = 504 if exc.timed_out else 502
        self.metrics.errors.labels("upstream_timeout" if exc.timed_out else "upstream_closed").inc()
        log.warning("the engine gave no answer to a request for %s: %s", exchange.path, exc)
        exchange.code = str(status)
        await self.answer_error(sink, status, exchange.path, "llm_meter: the engine at %s gave no answer (%s)"
                                % (self.config.upstream_url, exc))

    @staticmethod
    async def answer_error(sink, status, path, message):
        body = json.dumps(error_document(path, message)).encode()
        head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (status, STATUS_REASONS[status], len(body))).encode()
        with contextlib.suppress(ClientGone):
            await sink.write(head + body)

    # -- /metrics

    async def serve_metrics(self, reader, writer):
        try:
            raw = await read_head(Source(reader, ClientGone, METRICS_READ_TIMEOUT))
            request = parse_request_head(raw) if raw else None
            if request is not None:
                await self.answer_metrics(request, Sink(writer, ClientGone))
        except (BadMessage, ClientGone):
            pass
        finally:
            await close_writer(writer)

    async def answer_metrics(self, request, sink):
        method, path = request.start[0], request.start[1].split("?", 1)[0]
        if method in ("GET", "HEAD") and path == "/metrics":
            status, content_type, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        else:
            status, content_type, body = "404 Not Found", "text/plain", b"not found: the metrics are at /metrics\n"
        head = "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            status, content_type, len(body))
        await sink.write(head.encode() + (b"" if method == "HEAD" else body))


# -- the daemon ------------------------------------------------------------------------------------------------

async def serve(config):
    meter = await Meter(config).start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    log.info("metering %s on %s:%d (metrics on %s:%d)", config.upstream_url, config.listen_address,
             meter.proxy_port, config.metrics_host, meter.metrics_port)
    await stopping.wait()
    await meter.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Token-counting reverse proxy in front of the LLM engine.")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="the JSON configuration file")
    parser.add_argument("--check-config", metavar="FILE", help="check FILE and exit (0 when it can be used)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = load_config(args.check_config or args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 78  # EX_CONFIG: the unit does not restart with a configuration that cannot work
    if args.check_config:
        print("%s: configuration OK" % args.check_config)
        return 0
    if CollectorRegistry is None:
        log.error("the Python module prometheus_client is missing: install the package python3-prometheus-client")
        return 69  # EX_UNAVAILABLE
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        log.error("cannot listen on %s:%d or %s:%d: %s", config.listen_address, config.listen_port,
                  config.metrics_host, config.metrics_port, exc.strerror or exc)
        return 71  # EX_OSERR
    return 0


if __name__ == "__main__":
    sys.exit(main())
