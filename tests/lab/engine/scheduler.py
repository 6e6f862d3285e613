"""Which models are loaded, for how long (keep_alive), and what loading costs."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from dataclasses import dataclass, field

from .behaviour import Behaviour
from .faults import Faults
from .store import StoredModel

log = logging.getLogger("lab.engine")

FOREVER_SECONDS = 292 * 365 * 24 * 3600  # what a Go time.Duration can still hold
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class LoadError(Exception):
    """The model runner could not be started."""


class QueueFull(Exception):
    """More requests are waiting than OLLAMA_MAX_QUEUE allows."""


BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


def parse_keep_alive(value: object, default: float | None) -> float | None:
    """Seconds to keep a model loaded; None means forever (any negative value)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive {value!r}")
    seconds = float(value) if isinstance(value, int | float) else _parse_duration_text(str(value).strip())
    return None if seconds < 0 else seconds


def _parse_duration_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f"invalid keep_alive duration {text!r}")
    return sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


@dataclass
class Runner:
    stored: StoredModel
    behaviour: Behaviour
    context_length: int
    slots: threading.Semaphore
    loaded: threading.Event = field(default_factory=threading.Event)
    load_error: str | None = None
    refs: int = 0
    deadline: float | None = 0.0  # monotonic; None = forever
    last_used: float = 0.0

    @property
    def key(self) -> str:
        return self.stored.content_key

    @property
    def size(self) -> int:
        return self.behaviour.memory_bytes or self.stored.weights_size

    def expires_at(self, now: float) -> dt.datetime:
        remaining = FOREVER_SECONDS if self.deadline is None else max(0.0, self.deadline - now)
        return dt.datetime.now(dt.UTC).astimezone() + dt.timedelta(seconds=remaining)


@dataclass
class Lease:
    runner: Runner
    load_seconds: float


class Scheduler:
    def __init__(
        self,
        faults: Faults,
        max_loaded: int = 3,
        context_length: int = 4096,
        num_parallel: int = 4,
        max_queue: int = 512,
    ) -> None:
        self.faults = faults
        self.max_loaded = max(1, max_loaded)
        self.default_context_length = context_length
        self.num_parallel = max(1, num_parallel)
        self.max_queue = max_queue
        self._lock = threading.Lock()
        self._runners: dict[str, Runner] = {}
        self._pending = 0

    def acquire(self, stored: StoredModel, num_ctx: int | None = None) -> Lease:
        """Hold the model loaded and one of its parallel slots for one request, as Ollama's scheduler does."""
        started = time.monotonic()
        with self._lock:
            if self._pending >= self.max_queue:
                raise QueueFull(BUSY_MESSAGE)
            self._pending += 1
        try:
            lease = self._acquire_loaded(stored, num_ctx, started)
        finally:
            with self._lock:
                self._pending -= 1
        return lease

    def _acquire_loaded(self, stored: StoredModel, num_ctx: int | None, started: float) -> Lease:
        with self._lock:
            self._drop_expired(started)
            # Like Ollama, runners are keyed by the weights: an alias of a loaded model is already loaded.
            runner = self._runners.get(stored.content_key)
            must_load = runner is None
            if must_load:
                runner = self._new_runner(stored, num_ctx)
            runner.refs += 1
            was_loaded = runner.loaded.is_set()
        if must_load:
            self._load(runner)
        runner.loaded.wait()
        if runner.load_error:
            self._release_failed(runner)
            raise LoadError(runner.load_error)
        load_seconds = 0.0 if was_loaded else time.monotonic() - started
        runner.slots.acquire()  # queue here while num_parallel requests already run on this model
        return Lease(runner=runner, load_seconds=load_seconds)

    def release(self, lease: Lease, keep_alive: float | None) -> None:
        now = time.monotonic()
        lease.runner.slots.release()
        with self._lock:
            runner = lease.runner
            runner.refs = max(0, runner.refs - 1)
            runner.last_used = now
            runner.deadline = None if keep_alive is None else now + keep_alive
            if runner.refs == 0 and keep_alive == 0:
                self._unload(runner, "keep_alive 0")

    def unload(self, stored: StoredModel) -> bool:
        with self._lock:
            runner = self._runners.get(stored.content_key)
            if runner is None:
                return False
            self._unload(runner, "requested")
            return True

    def unload_name(self, canonical: str) -> None:
        with self._lock:
            for runner in list(self._runners.values()):
                if runner.stored.name.canonical == canonical:
                    self._unload(runner, "model removed")

    def running(self) -> list[Runner]:
        with self._lock:
            self._drop_expired(time.monotonic())
            return [runner for runner in self._runners.values() if runner.loaded.is_set() and not runner.load_error]

    def _new_runner(self, stored: StoredModel, num_ctx: int | None) -> Runner:
        behaviour = Behaviour.from_lab_config(stored.lab)
        context = num_ctx or min(self.default_context_length, behaviour.context_length)
        slots = threading.Semaphore(self.num_parallel)
        runner = Runner(stored=stored, behaviour=behaviour, context_length=context, slots=slots)
        self._make_room()
        self._runners[runner.key] = runner
        return runner

    def _load(self, runner: Runner) -> None:
        log.info('msg="loading model" model=%s digest=%s', runner.stored.name.display, runner.stored.digest[:12])
        time.sleep(runner.behaviour.load_seconds * self.faults.slow_factor)
        if self.faults.load_fails(runner.stored.name):
            runner.load_error = (
                f"llama runner process has terminated: lab fault: loading {runner.stored.name.display} fails on purpose"
            )
            log.error('msg="model failed to load" model=%s', runner.stored.name.display)
        runner.loaded.set()

    def _release_failed(self, runner: Runner) -> None:
        with self._lock:
            runner.refs = max(0, runner.refs - 1)
            if self._runners.get(runner.key) is runner:
                del self._runners[runner.key]

    def _make_room(self) -> None:
        while len(self._runners) >= self.max_loaded:
            idle = [runner for runner in self._runners.values() if runner.refs == 0]
            if not idle:
                return
            self._unload(min(idle, key=lambda runner: runner.last_used), "making room")

    def _drop_expired(self, now: float) -> None:
        for runner in list(self._runners.values()):
            expired = runner.deadline is not None and runner.deadline <= now
            if runner.refs == 0 and runner.loaded.is_set() and expired:
                self._unload(runner, "keep_alive expired")

    def _unload(self, runner: Runner, reason: str) -> None:
        if self._runners.get(runner.key) is runner:
            del self._runners[runner.key]
            log.info('msg="unloaded model" model=%s reason="%s"', runner.stored.name.display, reason)
