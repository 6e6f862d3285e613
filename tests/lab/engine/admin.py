"""``/lab/faults``: the lab-only admin API that injects faults into this engine process."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .core import ApiError
from .faults import FaultError

if TYPE_CHECKING:
    from .server import Exchange

PATH = "/lab/faults"
CRASH_DELAY_SECONDS = 0.1  # long enough for the answer to reach the client

log = logging.getLogger("lab.engine")


def get_faults(exchange: Exchange) -> None:
    exchange.send_json(200, exchange.engine.faults.snapshot())


def set_faults(exchange: Exchange) -> None:
    body = exchange.json_body()
    crash = bool(body.pop("crash", False))
    try:
        snapshot = exchange.engine.faults.update(body)
    except FaultError as exc:
        raise ApiError(400, str(exc)) from None
    log.warning('msg="lab faults changed" faults=%s crash=%s', snapshot, crash)
    exchange.send_json(200, snapshot | {"crash": crash})
    if crash:
        timer = threading.Timer(CRASH_DELAY_SECONDS, exchange.engine.on_crash)
        timer.daemon = True
        timer.start()


def clear_faults(exchange: Exchange) -> None:
    snapshot = exchange.engine.faults.clear()
    log.warning('msg="lab faults cleared"')
    exchange.send_json(200, snapshot)
