"""Structured JSON logs. A request is logged as one line with its id, route, status and latency:
never a body, a header value other than the request id, or any patient value."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = list(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_RESERVED = set(_STANDARD) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The timestamp's seconds part changes once a second: format it once a second.
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": f"{self._timestamp(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        keys = list(attributes)
        # A record's standard attributes come first, in LogRecord.__init__'s order, and the
        # `extra` fields after them: skip the ~20 standard ones in one comparison when they are
        # where they always are (one line per request is on the hot path).
        if keys[: len(_STANDARD)] == _STANDARD:
            keys = keys[len(_STANDARD) :]
        for key in keys:
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = attributes[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # orjson writes the same JSON as json.dumps(entry, default=str), several times faster
        # (one line per request is on the hot path).
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    # Our lines carry no caller file/line, so the logging module need not find the caller of
    # every record (the logging HOWTO's "Optimization" section): that walks the stack and was a
    # tenth of a prediction's CPU time. (Process and thread fields stay: gunicorn's own log
    # format prints %(process)d, which a None would break.)
    logging._srcfile = None
    root = logging.getLogger("ecmo")
    root.setLevel(level)
    if not any(getattr(h, "_ecmo", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._ecmo = True  # type: ignore[attr-defined]
        root.addHandler(handler)
