# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""namtech LLM exporter: Prometheus metrics of the LLM engine on one node (role namtech.internal_ai.llm_exporter).

Ollama has no ``/metrics``. At every scrape this daemon asks the engine's API what it runs (``/api/version``,
``/api/tags``, ``/api/ps``), reads the node's model release record, and asks ``nvidia-smi`` for the GPUs; each
scrape is bounded by a deadline, so a hung engine gives ``namtech_llm_up 0``, never a hung scrape. A canary
thread sends a tiny streamed generation every few seconds and records its time to first token and token rate.

For vLLM (which has its own ``/metrics``, scraped directly) only the engine's health and version, the release
record, the GPUs and the optional canary are exported.

Needs Python 3.9+ and prometheus_client 0.16+ (Debian: python3-prometheus-client); nothing else.
Usage: python3 namtech_llm_exporter.py --config /etc/namtech/llm_exporter.json   (or --check-config FILE)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Counters would also export a *_created series per label set; dashboards and alerts do not use them.
os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "true")

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.process_collector import ProcessCollector
except ImportError:  # reported by main(): the role installs python3-prometheus-client
    CollectorRegistry = None

log = logging.getLogger("namtech_llm_exporter")

ENGINES = ("ollama", "vllm")
DEFAULT_CONFIG_PATH = "/etc/namtech/llm_exporter.json"
API_KEY_VARIABLE = "NAMTECH_LLM_API_KEY"
RELEASE_RECORD_FORMAT = 1
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
MIB = 1024 * 1024
REPEATED_LOG_SECONDS = 300
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
CANARY_RESULTS = ("success", "error", "timeout")
ENGINE_STAGES = ("version", "tags", "ps", "health", "models")
ERROR_STAGES = {
    "ollama": ("version", "tags", "ps", "release_record", "gpu", "canary", "collect"),
    "vllm": ("health", "version", "models", "release_record", "gpu", "canary", "collect"),
}
NVIDIA_QUERY = ("index", "uuid", "name", "temperature.gpu", "power.draw", "memory.used", "memory.total")
_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:?\d\d)$")


# -- configuration ---------------------------------------------------------------------------------------------

class ConfigError(Exception):
    """The configuration file cannot be used; the text says which setting and why."""


@dataclass(frozen=True)
class Config:
    engine: str
    url: str
    listen_address: str
    listen_port: int = 9778
    timeout_seconds: float = 3.0
    release_record_path: str = "/var/lib/namtech_ai/releases.json"
    ca_file: str = ""
    nvidia_smi: str = "/usr/bin/nvidia-smi"
    gpu_timeout_seconds: float = 3.0
    canary_enabled: bool = True
    canary_model: str = "assistant"
    canary_interval_seconds: float = 30.0
    canary_timeout_seconds: float = 60.0
    canary_prompt: str = "Reply with one word: ok"
    canary_num_predict: int = 8
    canary_keep_alive: str = ""
    api_key: str = field(default="", repr=False)


_NUMBER = (int, float)
CONFIG_FIELDS = {
    # key: (accepted types, check, what a valid value is)
    "engine": (str, lambda value: value in ENGINES, "one of %s" % ", ".join(ENGINES)),
    "url": (str, lambda value: urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).hostname),
            "an http:// or https:// URL with a host"),
    "listen_address": (str, lambda value: value not in ("", "0.0.0.0", "::", "*"),  # noqa: S104 - refused
                       "this node's private address (never every address)"),
    "listen_port": (int, lambda value: 0 <= value < 65536, "a TCP port"),
    "timeout_seconds": (_NUMBER, lambda value: value > 0, "a number of seconds above 0"),
    "release_record_path": (str, os.path.isabs, "an absolute path"),
    "ca_file": (str, lambda value: value == "" or os.path.isabs(value), "empty or an absolute path"),
    "nvidia_smi": (str, lambda value: value == "" or os.path.isabs(value), "empty or an absolute path"),
    "gpu_timeout_seconds": (_NUMBER, lambda value: value > 0, "a number of seconds above 0"),
    "canary_enabled": (bool, lambda value: True, "true or false"),
    "canary_model": (str, lambda value: value != "", "a model or alias name"),
    "canary_interval_seconds": (_NUMBER, lambda value: value >= 1, "a number of seconds, at least 1"),
    "canary_timeout_seconds": (_NUMBER, lambda value: value > 0, "a number of seconds above 0"),
    "canary_prompt": (str, lambda value: value != "", "a non-empty prompt"),
    "canary_num_predict": (int, lambda value: value >= 1, "a number of tokens, at least 1"),
    "canary_keep_alive": (str, lambda value: True, "a duration such as 5m, or empty for the engine's default"),
}
REQUIRED_FIELDS = ("engine", "url", "listen_address")


def config_from_document(document, api_key=""):
    """A Config from the parsed JSON; unknown keys are refused so that a typo does not go unnoticed."""
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
    return Config(api_key=api_key, **document)


def load_config(path, environ=None):
    """Read and check the configuration file; the API key comes from the environment (a root-only env file)."""
    environ = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise ConfigError("%s is not valid JSON: %s" % (path, exc)) from None
    try:
        return config_from_document(document, environ.get(API_KEY_VARIABLE, ""))
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None


# -- talking to the engine -------------------------------------------------------------------------------------

class EngineError(Exception):
    """The engine gave no usable answer. ``stage`` names what was asked (version, tags, canary...)."""

    def __init__(self, stage, message):
        super().__init__(message)
        self.stage = stage
        self.message = message


class EngineTimeout(EngineError):
    """No complete answer before the deadline."""


@dataclass(frozen=True)
class Endpoint:
    """The engine's base URL, with what every request to it needs."""

    scheme: str
    host: str
    port: int
    base_path: str
    api_key: str = field(default="", repr=False)
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url, api_key="", ca_file=""):
        parts = urlsplit(url)
        default_port = 443 if parts.scheme == "https" else 80
        context = None
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file or None)
        return cls(parts.scheme, parts.hostname, parts.port or default_port, parts.path.rstrip("/"), api_key, context)

    def url_for(self, path):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d%s%s" % (self.scheme, host, self.port, self.base_path, path)

    def connection(self, timeout):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ssl_context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def headers(self, has_body):
        headers = {"Accept": "application/json", "User-Agent": "namtech-llm-exporter"}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = "Bearer %s" % self.api_key
        return headers


class Exchange:
    """One HTTP request that cannot outlive its deadline: a watchdog shuts the socket down when it passes,
    so a server that accepts and then says nothing, or trickles bytes, cannot hold the caller."""

    def __init__(self, endpoint, method, path, *, deadline, stage, body=None):
        self.endpoint = endpoint
        self.method = method
        self.path = path
        self.deadline = deadline
        self.stage = stage
        self.body = None if body is None else json.dumps(body).encode()
        self.expired = False
        self.connection = None
        self.response = None
        self._timer = None

    @property
    def where(self):
        return "%s %s" % (self.method, self.endpoint.url_for(self.path))

    def __enter__(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise EngineTimeout(self.stage, "%s: no time left before the deadline" % self.where)
        self.connection = self.endpoint.connection(timeout=remaining)
        self._timer = threading.Timer(remaining, self._expire)
        self._timer.daemon = True
        self._timer.start()
        try:
            self.connection.request(self.method, self.endpoint.base_path + self.path, body=self.body,
                                    headers=self.endpoint.headers(self.body is not None))
            self.response = self.connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self.failure(exc) from None
        if not 200 <= self.response.status < 300:
            excerpt = self._excerpt()
            self.close()
            raise EngineError(self.stage, "%s answered HTTP %d%s" % (self.where, self.response.status, excerpt))
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self._timer is not None:
            self._timer.cancel()
        if self.connection is not None:
            self.connection.close()

    def _expire(self):
        self.expired = True
        sock = self.connection.sock if self.connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def failure(self, exc):
        """The exception to raise for ``exc`` met while talking to the engine."""
        if self.expired or isinstance(exc, (socket.timeout, TimeoutError)):
            return EngineTimeout(self.stage, "%s: no complete answer before the deadline" % self.where)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
        return EngineError(self.stage, "%s failed: %s" % (self.where, reason))

    def _excerpt(self):
        try:
            text = self.response.read(300).decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException):
            return ""
        return ": %s" % text if text else ""

    def read_all(self):
        chunks, total = [], 0
        try:
            while True:
                chunk = self.response.read(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > MAX_ANSWER_BYTES:
                    raise EngineError(self.stage, "%s: the answer is larger than %d bytes" % (self.where,
                                                                                              MAX_ANSWER_BYTES))
                chunks.append(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise self.failure(exc) from None
        if self.expired:
            raise EngineTimeout(self.stage, "%s: no complete answer before the deadline" % self.where)
        return b"".join(chunks)

    def json(self):
        raw = self.read_all()
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise EngineError(self.stage, "%s: the answer is not JSON (%s)" % (self.where, exc)) from None
        if not isinstance(document, dict):
            raise EngineError(self.stage, "%s: the answer is not a JSON object" % self.where)
        return document

    def lines(self):
        """The body's non-empty lines as they arrive (NDJSON, server-sent events)."""
        try:
            while True:
                line = self.response.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES:
                    raise EngineError(self.stage, "%s: a line of the answer is longer than %d bytes"
                                      % (self.where, MAX_LINE_BYTES))
                if line.strip():
                    yield line.strip()
        except (OSError, http.client.HTTPException) as exc:
            raise self.failure(exc) from None
        if self.expired:
            raise EngineTimeout(self.stage, "%s: no complete answer before the deadline" % self.where)

    def json_lines(self):
        for line in self.lines():
            try:
                document = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise EngineError(self.stage, "%s: a line of the answer is not JSON (%s)" % (self.where, exc)) \
                    from None
            if not isinstance(document, dict):
                raise EngineError(self.stage, "%s: a line of the answer is not a JSON object" % self.where)
            yield document


def field_of(document, key, kinds, stage, where):
    value = document.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise EngineError(stage, "%s: the answer has no valid '%s'" % (where, key))
    return value


def canonical_model_name(name):
    """An Ollama name with its explicit tag, as /api/tags lists it (``assistant`` -> ``assistant:latest``)."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def normalize_digest(digest):
    text = digest.strip().lower()
    return text[len("sha256:"):] if text.startswith("sha256:") else text


def parse_rfc3339(text):
    """Seconds since the epoch of an RFC 3339 time (Go's, nanoseconds included), or None."""
    match = _RFC3339.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone in ("Z", "z"):
        offset = timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=offset)
    except ValueError:
        return None
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


@dataclass
class ModelOnDisk:
    name: str
    digest: str
    size: int


@dataclass
class LoadedModel:
    name: str
    digest: str
    size: int
    size_vram: int
    expires: float | None


@dataclass
class EngineState:
    """What one scrape learnt from the engine; ``problems`` are (stage, message) of what failed."""

    engine: str
    version: str | None = None
    models: list = field(default_factory=list)
    loaded: list = field(default_factory=list)
    served: list | None = None
    problems: list = field(default_factory=list)
    knows_models: bool = False

    @property
    def up(self):
        return self.version is not None and not self.problems


@dataclass(frozen=True)
class CanaryResult:
    ttft_seconds: float
    tokens_per_second: float | None


class OllamaProbe:
    """Ollama's native API."""

    engine = "ollama"

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def get(self, path, stage, deadline):
        with Exchange(self.endpoint, "GET", path, deadline=deadline, stage=stage) as exchange:
            return exchange.json(), exchange.where

    def snapshot(self, deadline):
        state = EngineState(self.engine, knows_models=True)
        try:
            answer, where = self.get("/api/version", "version", deadline)
            state.version = field_of(answer, "version", str, "version", where)
        except EngineError as exc:
            state.problems.append((exc.stage, exc.message))
            return state  # the engine is down or not Ollama: asking more would only wait longer
        for reader in (self._models, self._loaded):
            try:
                reader(state, deadline)
            except EngineError as exc:
                state.problems.append((exc.stage, exc.message))
        return state

    def _entries(self, path, stage, deadline):
        answer, where = self.get(path, stage, deadline)
        entries = field_of(answer, "models", list, stage, where)
        valid = [entry for entry in entries if isinstance(entry, dict) and isinstance(entry.get("name"), str)
                 and isinstance(entry.get("digest"), str) and isinstance(entry.get("size"), int)]
        return valid, len(entries) - len(valid), where

    def _models(self, state, deadline):
        entries, broken, where = self._entries("/api/tags", "tags", deadline)
        state.models = [ModelOnDisk(entry["name"], normalize_digest(entry["digest"]), entry["size"])
                        for entry in entries]
        if broken:
            raise EngineError("tags", "%s: %d model(s) without a name, digest or size" % (where, broken))

    def _loaded(self, state, deadline):
        entries, broken, where = self._entries("/api/ps", "ps", deadline)
        state.loaded = [LoadedModel(entry["name"], normalize_digest(entry["digest"]), entry["size"],
                                    entry["size_vram"] if isinstance(entry.get("size_vram"), int) else 0,
                                    parse_rfc3339(entry.get("expires_at")))
                        for entry in entries]
        if broken:
            raise EngineError("ps", "%s: %d loaded model(s) without a name, digest or size" % (where, broken))

    def canary(self, model, prompt, num_predict, keep_alive, deadline):
        body = {"model": model, "prompt": prompt, "stream": True, "options": {"num_predict": num_predict}}
        if keep_alive:
            body["keep_alive"] = int(keep_alive) if keep_alive.lstrip("-").isdigit() else keep_alive
        started = time.monotonic()
        first_token = final = None
        with Exchange(self.endpoint, "POST", "/api/generate", deadline=deadline, stage="canary",
                      body=body) as exchange:
            for event in exchange.json_lines():
                if "error" in event:
                    raise EngineError("canary", "%s: the engine answered with an error: %s"
                                      % (exchange.where, event["error"]))
                if first_token is None and event.get("response"):
                    first_token = time.monotonic()
                if event.get("done") is True:
                    final = event
                    break
            if final is None:
                raise EngineError("canary", "%s: the stream ended without its final object" % exchange.where)
        ttft = (first_token or time.monotonic()) - started
        count, duration = final.get("eval_count"), final.get("eval_duration")
        rate = None
        if isinstance(count, int) and isinstance(duration, int) and count > 0 and duration > 0:
            rate = count / (duration / 1e9)
        return CanaryResult(ttft, rate)


class VllmProbe:
    """vLLM's OpenAI-compatible server: its health, version and served names (Prometheus scrapes its /metrics)."""

    engine = "vllm"

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def snapshot(self, deadline):
        state = EngineState(self.engine)
        try:
            with Exchange(self.endpoint, "GET", "/health", deadline=deadline, stage="health") as exchange:
                exchange.read_all()
            with Exchange(self.endpoint, "GET", "/version", deadline=deadline, stage="version") as exchange:
                state.version = field_of(exchange.json(), "version", str, "version", exchange.where)
            with Exchange(self.endpoint, "GET", "/v1/models", deadline=deadline, stage="models") as exchange:
                entries = field_of(exchange.json(), "data", list, "models", exchange.where)
                state.served = sorted({entry["id"] for entry in entries
                                       if isinstance(entry, dict) and isinstance(entry.get("id"), str)})
        except EngineError as exc:
            state.problems.append((exc.stage, exc.message))
        return state

    def canary(self, model, prompt, num_predict, keep_alive, deadline):
        del keep_alive  # vLLM keeps its one model loaded
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": num_predict,
                "stream": True, "stream_options": {"include_usage": True}}
        started = time.monotonic()
        first_token = usage = None
        with Exchange(self.endpoint, "POST", "/v1/chat/completions", deadline=deadline, stage="canary",
                      body=body) as exchange:
            for line in exchange.lines():
                event = self._event(line, exchange.where)
                if event is None:
                    break
                if first_token is None and any((choice.get("delta") or {}).get("content")
                                               for choice in event.get("choices") or [] if isinstance(choice, dict)):
                    first_token = time.monotonic()
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
        finished = time.monotonic()
        ttft = (first_token or finished) - started
        tokens = usage.get("completion_tokens") if usage else None
        rate = None
        if isinstance(tokens, int) and tokens > 1 and first_token is not None and finished > first_token:
            rate = (tokens - 1) / (finished - first_token)
        return CanaryResult(ttft, rate)

    @staticmethod
    def _event(line, where):
        """The JSON of one server-sent event line; None at ``[DONE]``; {} for lines that are not data."""
        if not line.startswith(b"data:"):
            return {}
        payload = line[len(b"data:"):].strip()
        if payload == b"[DONE]":
            return None
        try:
            event = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise EngineError("canary", "%s: an event of the stream is not JSON (%s)" % (where, exc)) from None
        if isinstance(event, dict) and "error" in event:
            raise EngineError("canary", "%s: the engine answered with an error: %s" % (where, event["error"]))
        return event if isinstance(event, dict) else {}


# -- the release record ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseVersion:
    model: str
    digest: str
    engine: str
    deployed_by: str
    since: float | None


@dataclass(frozen=True)
class AliasRelease:
    alias: str
    current: ReleaseVersion | None
    candidate: ReleaseVersion | None


@dataclass(frozen=True)
class ReleaseRecordState:
    ok: bool
    aliases: tuple = ()
    problem: str | None = None


def release_version(entry, time_key, by_key):
    """One version of the record; label values are text whatever a hand-edited record holds."""
    return ReleaseVersion(entry["model"], str(entry.get("digest") or ""), str(entry.get("engine") or "ollama"),
                          str(entry.get(by_key) or ""), parse_rfc3339(entry.get(time_key)))


def release_record_problem(record):
    """Why ``record`` is not a release record this exporter can read (format 1), or None."""
    if not isinstance(record, dict):
        return "the top level is not an object"
    if record.get("format") != RELEASE_RECORD_FORMAT:
        return "'format' is %s, expected %d" % (json.dumps(record.get("format")), RELEASE_RECORD_FORMAT)
    if not isinstance(record.get("aliases"), dict):
        return "'aliases' is not an object"
    for alias, entry in record["aliases"].items():
        if not isinstance(entry, dict):
            return "aliases.%s is not an object" % alias
        for key in ("current", "candidate"):
            version = entry.get(key)
            if version is not None and not (isinstance(version, dict) and isinstance(version.get("model"), str)):
                return "aliases.%s.%s is not an object with a string 'model'" % (alias, key)
    return None


def read_release_record(path):
    """The record's aliases; a missing file is a node without releases (ok), an unreadable one is not."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_ANSWER_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return ReleaseRecordState(ok=True)
    except OSError as exc:
        return ReleaseRecordState(ok=False, problem="cannot read the release record %s: %s"
                                  % (path, exc.strerror or exc))
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return ReleaseRecordState(ok=False, problem="the release record %s is not valid JSON: %s" % (path, exc))
    problem = release_record_problem(record)
    if problem:
        return ReleaseRecordState(ok=False, problem="the release record %s is not in format %d: %s"
                                  % (path, RELEASE_RECORD_FORMAT, problem))
    aliases = []
    for alias, entry in sorted(record["aliases"].items()):
        current = entry.get("current")
        candidate = entry.get("candidate")
        aliases.append(AliasRelease(
            alias,
            release_version(current, "since", "deployed_by") if current else None,
            release_version(candidate, "staged_at", "staged_by") if candidate else None,
        ))
    return ReleaseRecordState(ok=True, aliases=tuple(aliases))


# -- GPUs ------------------------------------------------------------------------------------------------------

class GpuError(Exception):
    """nvidia-smi is there but gave no readings."""


@dataclass(frozen=True)
class GpuReading:
    index: str
    uuid: str
    name: str
    temperature_celsius: float | None
    power_watts: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None


def nvidia_number(text):
    """nvidia-smi prints [N/A] or [Not Supported] where a board has no such sensor."""
    try:
        return float(text)
    except ValueError:
        return None


def parse_nvidia_smi(output):
    readings = []
    for row in csv.reader(output.splitlines(), skipinitialspace=True):
        if not row:
            continue
        if len(row) != len(NVIDIA_QUERY):
            raise GpuError("nvidia-smi printed %d fields where %d were asked: %r"
                           % (len(row), len(NVIDIA_QUERY), ",".join(row)))
        index, uuid, name, temperature, power, used, total = (cell.strip() for cell in row)
        used_mib, total_mib = nvidia_number(used), nvidia_number(total)
        readings.append(GpuReading(index, uuid, name, nvidia_number(temperature), nvidia_number(power),
                                   None if used_mib is None else used_mib * MIB,
                                   None if total_mib is None else total_mib * MIB))
    return readings


def read_nvidia_gpus(binary, timeout):
    """GPU readings, or None when this node has no nvidia-smi (then no GPU series at all)."""
    if not binary or shutil.which(binary) is None:
        return None
    command = [binary, "--query-gpu=" + ",".join(NVIDIA_QUERY), "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        raise GpuError("nvidia-smi gave no answer within %gs" % timeout) from None
    except OSError as exc:
        raise GpuError("cannot run %s: %s" % (binary, exc.strerror or exc)) from None
    if done.returncode != 0:
        raise GpuError("nvidia-smi failed (exit status %d): %s"
                       % (done.returncode, (done.stderr or done.stdout).strip()[:300]))
    return parse_nvidia_smi(done.stdout)


# -- metrics ---------------------------------------------------------------------------------------------------

class ProblemLog:
    """Logs a failure when it starts or changes, and again only every few minutes while it lasts."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._last = {}
        self._lock = threading.Lock()

    def report(self, stage, message):
        now = self._clock()
        with self._lock:
            previous = self._last.get(stage)
            if previous and previous[0] == message and now - previous[1] < REPEATED_LOG_SECONDS:
                return
            self._last[stage] = (message, now)
        log.warning("%s: %s", stage, message)

    def clear(self, stage):
        with self._lock:
            if self._last.pop(stage, None) is not None:
                log.info("%s: working again", stage)


class ScrapeCollector:
    """Everything that is read at scrape time: the engine's API, the release record, the GPUs."""

    def __init__(self, config, probe, errors, problems):
        self.config = config
        self.probe = probe
        self.errors = errors
        self.problems = problems

    def describe(self):
        return []

    def collect(self):
        try:
            return self._families()
        except Exception as exc:  # a scrape must answer, whatever a bug here does
            log.exception("collecting the metrics failed")
            self.fail("collect", "collecting the metrics failed: %s" % exc)
            up = GaugeMetricFamily("namtech_llm_up", "1 when the engine answered the last scrape's requests.",
                                   labels=["engine"])
            up.add_metric([self.probe.engine], 0)
            return [up]

    def fail(self, stage, message):
        self.errors.labels(stage).inc()
        self.problems.report(stage, message)

    def _families(self):
        started = time.monotonic()
        state = self.probe.snapshot(started + self.config.timeout_seconds)
        duration = time.monotonic() - started
        for stage, message in state.problems:
            self.fail(stage, message)
        if state.up:
            for stage in ENGINE_STAGES:
                self.problems.clear(stage)
        families = engine_families(state, duration)
        record = read_release_record(self.config.release_record_path)
        if record.problem:
            self.fail("release_record", record.problem)
        else:
            self.problems.clear("release_record")
        families += release_families(record)
        if state.knows_models:
            families += alias_families(record, state)
        elif state.served is not None:
            families += served_families(record, state)
        families += self._gpu_families()
        return families

    def _gpu_families(self):
        try:
            readings = read_nvidia_gpus(self.config.nvidia_smi, self.config.gpu_timeout_seconds)
        except GpuError as exc:
            self.fail("gpu", str(exc))
            return []
        self.problems.clear("gpu")
        return gpu_families(readings or [])


def gauge(name, documentation, labels, samples):
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in samples:
        family.add_metric(label_values, value)
    return family


def engine_families(state, duration):
    engine = state.engine
    families = [
        gauge("namtech_llm_up", "1 when the engine answered the last scrape's requests.", ["engine"],
              [([engine], 1 if state.up else 0)]),
        gauge("namtech_llm_scrape_duration_seconds", "How long the last scrape's requests to the engine took.",
              ["engine"], [([engine], duration)]),
        gauge("namtech_llm_engine_info", "The engine's version (value 1).", ["engine", "version"],
              [([engine, state.version], 1)] if state.version is not None else []),
    ]
    if not state.knows_models:
        return families
    loaded_names = {model.name for model in state.loaded}
    on_disk = {model.name: model for model in state.models}
    loaded_rows = [([model.name, model.digest], 1) for model in state.loaded]
    loaded_rows += [([model.name, model.digest], 0) for model in state.models if model.name not in loaded_names]
    families += [
        gauge("namtech_llm_model_size_bytes", "Size on disk of each model the engine has (/api/tags).",
              ["model", "digest"], [([model.name, model.digest], model.size) for model in on_disk.values()]),
        gauge("namtech_llm_model_loaded", "1 for each model loaded in memory (/api/ps), 0 for one only on disk.",
              ["model", "digest"], loaded_rows),
        gauge("namtech_llm_model_vram_bytes", "GPU memory each loaded model holds (/api/ps size_vram).",
              ["model"], [([model.name], model.size_vram) for model in state.loaded]),
        gauge("namtech_llm_model_memory_bytes", "Memory (GPU and system) each loaded model holds (/api/ps size).",
              ["model"], [([model.name], model.size) for model in state.loaded]),
        gauge("namtech_llm_model_expires_timestamp_seconds",
              "When each loaded model will be unloaded unless used again (Unix time, /api/ps expires_at).",
              ["model"], [([model.name], model.expires) for model in state.loaded if model.expires is not None]),
    ]
    return families


def release_families(record):
    current = [entry for entry in record.aliases if entry.current is not None]
    staged = [entry for entry in record.aliases if entry.candidate is not None]
    return [
        gauge("namtech_model_release_record_ok", "1 when the release record is readable (or absent), 0 if not.",
              [], [([], 1 if record.ok else 0)]),
        gauge("namtech_model_release_info", "The version each alias serves per the release record (value 1).",
              ["alias", "model", "digest", "engine", "deployed_by"],
              [([entry.alias, entry.current.model, entry.current.digest, entry.current.engine,
                 entry.current.deployed_by], 1) for entry in current]),
        gauge("namtech_model_release_since_timestamp_seconds",
              "Since when (Unix time) each alias serves its current version.", ["alias"],
              [([entry.alias], entry.current.since) for entry in current if entry.current.since is not None]),
        gauge("namtech_model_release_candidate_info", "The candidate staged for each alias (value 1).",
              ["alias", "model", "digest"],
              [([entry.alias, entry.candidate.model, entry.candidate.digest], 1) for entry in staged]),
    ]


def alias_families(record, state):
    """What the engine serves under each alias of the record right now: the digest it lists for the alias."""
    if not state.models and "tags" in {stage for stage, _message in state.problems}:
        return []
    digests = {model.name: model.digest for model in state.models}
    rows = []
    for entry in record.aliases:
        served = digests.get(canonical_model_name(entry.alias))
        if entry.current is not None and served is not None:
            rows.append(([entry.alias, entry.current.model, served], 1))
    return [gauge("namtech_llm_alias_info",
                  "Each alias of the release record with the digest the engine serves under it now (value 1).",
                  ["alias", "model", "digest"], rows)]


def served_families(record, state):
    """vLLM keeps the models it serves loaded; it knows no digests, so the release record's stand in for them."""
    recorded = {entry.alias: entry.current for entry in record.aliases if entry.current is not None}
    return [
        gauge("namtech_llm_model_loaded", "1 for each model loaded in memory (vLLM: each served model name).",
              ["model", "digest"],
              [([name, recorded[name].digest if name in recorded else ""], 1) for name in state.served]),
        gauge("namtech_llm_alias_info",
              "Each alias of the release record the engine serves now, with the recorded digest (value 1).",
              ["alias", "model", "digest"],
              [([alias, current.model, current.digest], 1) for alias, current in sorted(recorded.items())
               if alias in state.served]),
    ]


def gpu_families(readings):
    def rows(attribute):
        return [([gpu.index], getattr(gpu, attribute)) for gpu in readings if getattr(gpu, attribute) is not None]

    return [
        gauge("namtech_gpu_info", "Each NVIDIA GPU (value 1).", ["gpu", "uuid", "name"],
              [([gpu.index, gpu.uuid, gpu.name], 1) for gpu in readings]),
        gauge("namtech_gpu_temperature_celsius", "GPU core temperature (nvidia-smi).", ["gpu"],
              rows("temperature_celsius")),
        gauge("namtech_gpu_power_watts", "GPU power draw (nvidia-smi).", ["gpu"], rows("power_watts")),
        gauge("namtech_gpu_memory_used_bytes", "GPU memory in use (nvidia-smi).", ["gpu"], rows("memory_used_bytes")),
        gauge("namtech_gpu_memory_total_bytes", "GPU memory size (nvidia-smi).", ["gpu"], rows("memory_total_bytes")),
    ]


# -- the canary ------------------------------------------------------------------------------------------------

class Canary:
    """A tiny streamed generation every ``canary_interval_seconds``, in its own thread."""

    def __init__(self, config, probe, registry, errors, problems):
        self.config = config
        self.probe = probe
        self.errors = errors
        self.problems = problems
        self.model = canonical_model_name(config.canary_model) if probe.engine == "ollama" else config.canary_model
        self.ttft = Histogram("namtech_llm_canary_ttft_seconds", "Time to the canary's first token.", ["model"],
                              buckets=TTFT_BUCKETS, registry=registry)
        self.rate = Histogram("namtech_llm_canary_tokens_per_second", "The canary's generation speed.", ["model"],
                              buckets=TOKENS_PER_SECOND_BUCKETS, registry=registry)
        self.requests = Counter("namtech_llm_canary_requests", "Canary requests by result.", ["model", "result"],
                                registry=registry)
        self.last_success = Gauge("namtech_llm_canary_last_success_timestamp_seconds",
                                  "When the canary last succeeded (Unix time; 0 before its first success).",
                                  ["model"], registry=registry)
        for result in CANARY_RESULTS:
            self.requests.labels(self.model, result)
        self.ttft.labels(self.model)
        self.rate.labels(self.model)
        self.last_success.labels(self.model)
        self._stop = threading.Event()
        self._thread = None

    def run_once(self):
        deadline = time.monotonic() + self.config.canary_timeout_seconds
        try:
            result = self.probe.canary(self.config.canary_model, self.config.canary_prompt,
                                       self.config.canary_num_predict, self.config.canary_keep_alive, deadline)
        except EngineError as exc:
            outcome = "timeout" if isinstance(exc, EngineTimeout) else "error"
            self.requests.labels(self.model, outcome).inc()
            self.errors.labels("canary").inc()
            self.problems.report("canary", exc.message)
            return outcome
        self.ttft.labels(self.model).observe(result.ttft_seconds)
        if result.tokens_per_second is not None:
            self.rate.labels(self.model).observe(result.tokens_per_second)
        self.requests.labels(self.model, "success").inc()
        self.last_success.labels(self.model).set(time.time())
        self.problems.clear("canary")
        return "success"

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the canary thread must survive a bug in one round
                log.exception("the canary round failed")
                self.errors.labels("canary").inc()
            self._stop.wait(self.config.canary_interval_seconds)

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="canary", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.canary_timeout_seconds + 5)


# -- the HTTP endpoint -----------------------------------------------------------------------------------------

class MetricsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle on, a kept-alive scrape waits for the client's delayed ACK
    # (about 40 ms on Linux) before the body goes out.
    disable_nagle_algorithm = True
    server_version = "namtech-llm-exporter"
    sys_version = ""

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/":
            self._answer(200, b"namtech LLM exporter: the metrics are at /metrics\n", "text/plain; charset=utf-8")
        else:
            self._answer(404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8")

    def _answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        log.debug(format, *args)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, port, registry):
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.registry = registry
        super().__init__((address, port), MetricsHandler)


def make_probe(config):
    endpoint = Endpoint.from_url(config.url, config.api_key, config.ca_file)
    return OllamaProbe(endpoint) if config.engine == "ollama" else VllmProbe(endpoint)


class Exporter:
    """The registry, the scrape collector, the canary and the HTTP endpoint of one engine."""

    def __init__(self, config):
        self.config = config
        self.registry = CollectorRegistry()
        self.problems = ProblemLog()
        self.probe = make_probe(config)
        self.errors = Counter("namtech_llm_exporter_errors", "Failures by stage (engine requests, release record, "
                              "GPUs, canary).", ["stage"], registry=None)
        for stage in ERROR_STAGES[config.engine]:
            self.errors.labels(stage)
        # A registry collects in registration order: the scrape's own failures must be counted before the counter
        # is read, so that a scrape shows the failures it met.
        self.registry.register(ScrapeCollector(config, self.probe, self.errors, self.problems))
        self.registry.register(self.errors)
        self.registry.register(ProcessCollector(registry=None))
        self.canary = Canary(config, self.probe, self.registry, self.errors, self.problems) \
            if config.canary_enabled else None
        self.server = None
        self._thread = None

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return "http://%s:%d" % ("[%s]" % host if ":" in host else host, port)

    def start(self, run_canary=True):
        """Listen, and start the canary's thread (without it, ``canary.run_once()`` runs a round on demand)."""
        self.server = MetricsServer(self.config.listen_address, self.config.listen_port, self.registry)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics", daemon=True)
        self._thread.start()
        if self.canary is not None and run_canary:
            self.canary.start()
        return self

    def stop(self):
        if self.canary is not None:
            self.canary.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=5)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Prometheus metrics of the LLM engine on this node.")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="the JSON configuration file")
    parser.add_argument("--check-config", metavar="FILE", help="check FILE and exit (0 when it can be used)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = load_config(args.check_config or args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 78  # EX_CONFIG: systemd does not restart a unit whose configuration is wrong (RestartPreventExitStatus)
    if args.check_config:
        print("%s: configuration OK" % args.check_config)
        return 0
    if CollectorRegistry is None:
        log.error("the Python module prometheus_client is missing: install the package python3-prometheus-client")
        return 69  # EX_UNAVAILABLE
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_args: stopping.set())
    signal.signal(signal.SIGINT, lambda *_args: stopping.set())
    try:
        exporter = Exporter(config).start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.listen_address, config.listen_port, exc.strerror or exc)
        return 71  # EX_OSERR
    log.info("exporting %s metrics of %s on %s/metrics (canary %s)", config.engine, config.url, exporter.url,
             "every %gs on %s" % (config.canary_interval_seconds, config.canary_model) if config.canary_enabled
             else "off")
    stopping.wait()
    exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
