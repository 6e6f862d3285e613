"""One line per event on stderr, ``key=value`` like Ollama's own log, so journald keeps it readable."""

from __future__ import annotations

import logging
import sys
import time

FORMAT = "time=%(asctime)s level=%(levelname)s source=%(filename)s:%(lineno)d %(message)s"


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}{time.strftime('%z', time.localtime(record.created))}"

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def configure(debug: bool = False) -> None:
    logger = logging.getLogger("lab.engine")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(FORMAT))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
