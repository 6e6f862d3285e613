"""Faults injected on demand into one engine process (lab only: the real Ollama has nothing like it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping

from .names import ModelName

KNOWN = ("crash", "hang", "slow_factor", "error_rate", "fail_load")  # crash is handled by the admin API


class FaultError(ValueError):
    """A fault request that cannot be applied."""


class Faults:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._error_credit = 0.0
        self.hang = False
        self.slow_factor = 1.0
        self.error_rate = 0.0
        self.fail_load: set[str] = set()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Faults:
        faults = cls()
        settings: dict = json.loads(environ.get("OLLAMA_LAB_FAULTS") or "{}")
        if environ.get("OLLAMA_LAB_HANG"):
            settings["hang"] = environ["OLLAMA_LAB_HANG"].lower() in ("1", "true", "yes")
        if environ.get("OLLAMA_LAB_SLOW_FACTOR"):
            settings["slow_factor"] = float(environ["OLLAMA_LAB_SLOW_FACTOR"])
        if environ.get("OLLAMA_LAB_ERROR_RATE"):
            settings["error_rate"] = float(environ["OLLAMA_LAB_ERROR_RATE"])
        if environ.get("OLLAMA_LAB_FAIL_LOAD"):
            settings["fail_load"] = [item for item in environ["OLLAMA_LAB_FAIL_LOAD"].split(",") if item.strip()]
        settings.pop("crash", None)
        faults.update(settings)
        return faults

    def update(self, settings: Mapping) -> dict:
        """Apply the given settings (others stay as they are); ``crash`` is the caller's business."""
        unknown = set(settings) - set(_PARSERS)
        if unknown:
            raise FaultError(f"unknown fault(s): {', '.join(sorted(unknown))}; known: {', '.join(KNOWN)}")
        parsed = _parse(settings)
        with self._cond:
            for key, value in parsed.items():
                setattr(self, key, value)
            self._cond.notify_all()
        return self.snapshot()

    def clear(self) -> dict:
        with self._cond:
            self.hang = False
            self.slow_factor = 1.0
            self.error_rate = 0.0
            self.fail_load = set()
            self._error_credit = 0.0
            self._cond.notify_all()
        return self.snapshot()

    def snapshot(self) -> dict:
        with self._cond:
            return {
                "hang": self.hang,
                "slow_factor": self.slow_factor,
                "error_rate": self.error_rate,
                "fail_load": sorted(self.fail_load),
            }

    def wait_while_hung(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self.hang)

    def next_request_fails(self) -> bool:
        """Fail exactly ``error_rate`` of requests, spread evenly, so runs are reproducible."""
        with self._cond:
            if self.error_rate <= 0:
                return False
            self._error_credit += self.error_rate
            if self._error_credit >= 1.0 - 1e-9:
                self._error_credit -= 1.0
                return True
            return False

    def load_fails(self, name: ModelName) -> bool:
        with self._cond:
            return name.canonical in self.fail_load


def _parse(settings: Mapping) -> dict:
    try:
        return {key: _PARSERS[key](value) for key, value in settings.items()}
    except FaultError:
        raise
    except (TypeError, ValueError) as exc:
        raise FaultError(str(exc)) from None


def _positive(value: object) -> float:
    number = float(value)
    if number <= 0:
        raise FaultError("slow_factor must be greater than 0")
    return number


def _fraction(value: object) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise FaultError("error_rate must be between 0 and 1")
    return number


def _model_names(value: object) -> set[str]:
    names = [value] if isinstance(value, str) else list(value or [])
    return {ModelName.parse(str(name)).canonical for name in names}


_PARSERS = {"hang": bool, "slow_factor": _positive, "error_rate": _fraction, "fail_load": _model_names}
