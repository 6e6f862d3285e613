"""The engine's state (store, scheduler, puller, faults) and the inference loop both APIs share."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .behaviour import Reply, count_tokens, plan_reply
from .faults import Faults
from .names import InvalidName, ModelName
from .registry import Puller, RegistryConfig
from .scheduler import Lease, LoadError, QueueFull, Scheduler, parse_keep_alive
from .store import ModelStore, StoredModel
from .version import VERSION

DEFAULT_PORT = 11434
CRASH_EXIT_CODE = 70


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat()


def parse_ollama_host(value: str | None) -> tuple[str, int]:
    """OLLAMA_HOST as Ollama reads it: ``host``, ``host:port``, ``:port`` or ``scheme://host[:port]``."""
    text = (value or "").strip()
    default_port = DEFAULT_PORT
    if "://" in text:
        scheme, text = text.split("://", 1)
        default_port = {"http": 80, "https": 443}.get(scheme.lower(), DEFAULT_PORT)
    text = text.split("/", 1)[0]
    host, port = text, default_port
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    return host or "127.0.0.1", port


@dataclass
class EngineConfig:
    models_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    keep_alive: float | None = 300.0
    registry_url: str = ""
    max_loaded: int = 3
    context_length: int = 4096
    num_parallel: int = 4
    max_queue: int = 512
    version: str = VERSION
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> EngineConfig:
        host, port = parse_ollama_host(environ.get("OLLAMA_HOST"))
        home = environ.get("HOME") or os.path.expanduser("~")
        models = environ.get("OLLAMA_MODELS") or os.path.join(home, ".ollama", "models")
        return cls(
            models_dir=Path(models),
            host=host,
            port=port,
            keep_alive=parse_keep_alive(environ.get("OLLAMA_KEEP_ALIVE"), 300.0),
            registry_url=environ.get("OLLAMA_LAB_REGISTRY", ""),
            max_loaded=int(environ.get("OLLAMA_MAX_LOADED_MODELS") or 3),
            context_length=int(environ.get("OLLAMA_CONTEXT_LENGTH") or 4096),
            num_parallel=int(environ.get("OLLAMA_NUM_PARALLEL") or 4),
            max_queue=int(environ.get("OLLAMA_MAX_QUEUE") or 512),
            environ=dict(environ),
        )


class Engine:
    def __init__(self, config: EngineConfig, faults: Faults | None = None, on_crash: Callable[[], None] | None = None):
        self.config = config
        self.faults = faults or Faults()
        self.on_crash = on_crash or (lambda: os._exit(CRASH_EXIT_CODE))
        self.store = ModelStore(config.models_dir)
        self.scheduler = Scheduler(
            self.faults, config.max_loaded, config.context_length, config.num_parallel, config.max_queue
        )
        self.puller = Puller(self.store, RegistryConfig(config.registry_url, f"ollama/{config.version} (lab engine)"))

    def parse_name(self, raw: object, field_name: str = "model") -> ModelName:
        if not raw:
            raise ApiError(400, f"{field_name} is required")
        try:
            return ModelName.parse(str(raw))
        except InvalidName as exc:
            raise ApiError(400, str(exc)) from None

    def find_model(self, raw: object) -> StoredModel:
        stored = self.store.get(self.parse_name(raw))
        if stored is None:
            raise ApiError(404, f"model '{raw}' not found")
        return stored

    def keep_alive(self, value: object) -> float | None:
        try:
            return parse_keep_alive(value, self.config.keep_alive)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    def check_injected_error(self) -> None:
        if self.faults.next_request_fails():
            raise ApiError(500, "lab fault: injected inference error")

    def lease(self, stored: StoredModel, num_ctx: int | None = None) -> Lease:
        try:
            return self.scheduler.acquire(stored, num_ctx)
        except LoadError as exc:
            raise ApiError(500, str(exc)) from None
        except QueueFull as exc:
            raise ApiError(503, str(exc)) from None

    def start(self, stored: StoredModel, prompt: str, options: Mapping | None, keep_alive: float | None) -> Inference:
        options = options or {}
        if not isinstance(options, Mapping):
            raise ApiError(400, "options must be an object")
        num_ctx, num_predict = _int_or_none(options.get("num_ctx")), _int_or_none(options.get("num_predict"))
        started = time.monotonic()
        lease = self.lease(stored, num_ctx)
        reply = plan_reply(lease.runner.behaviour, stored.content_key, prompt, num_predict)
        return Inference(self, lease, reply, count_tokens(prompt), keep_alive, started)


@dataclass
class Inference:
    engine: Engine
    lease: Lease
    reply: Reply
    prompt_tokens: int
    keep_alive: float | None
    started: float
    prompt_seconds: float = 0.0
    eval_seconds: float = 0.0
    emitted: int = 0
    _released: bool = False

    def tokens(self) -> Iterator[str]:
        """Yield the reply at the model's pace: time to first token, then tokens_per_second."""
        behaviour = self.lease.runner.behaviour
        began = time.monotonic()
        time.sleep(behaviour.ttft_seconds * self.engine.faults.slow_factor)
        self.prompt_seconds = time.monotonic() - began
        eval_began = time.monotonic()
        for index, token in enumerate(self.reply.tokens):
            if index:
                time.sleep(self.engine.faults.slow_factor / behaviour.tokens_per_second)
            self.emitted += 1
            self.eval_seconds = time.monotonic() - eval_began
            yield token

    def run_to_end(self) -> str:
        """Generate the whole reply (at the model's pace) and return it."""
        return "".join(self.tokens())

    @property
    def text(self) -> str:
        return "".join(self.reply.tokens)

    def finish(self) -> dict:
        """Release the model and return Ollama's final statistics."""
        self.release()
        return {
            "done_reason": self.reply.done_reason,
            "total_duration": _ns(time.monotonic() - self.started),
            "load_duration": _ns(self.lease.load_seconds),
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": _ns(self.prompt_seconds),
            "eval_count": self.emitted,
            "eval_duration": _ns(self.eval_seconds),
        }

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.engine.scheduler.release(self.lease, self.keep_alive)


def _ns(seconds: float) -> int:
    return max(1, int(seconds * 1e9))


def _int_or_none(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"invalid option value {value!r}") from None
