"""Structured JSON logs. A request is logged as one line with its id, route, status and latency:
never a body, a header value other than the request id, or any patient value."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

_STANDARD = list(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_RESERVED = set(_STANDARD) | {"message", "asctime"}
ROOT_LOGGER = "ecmo"


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
        # LogRecord's own msecs formula.
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: Mapping[str, Any],
        exception: str | None = None,
    ) -> str:
        """One JSON object: ts, level, logger, message, then the fields (and the exception)."""
        entry: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        entry.update(fields)
        if exception is not None:
            entry["exception"] = exception
        # orjson writes the same JSON as json.dumps(entry, default=str), several times faster.
        return orjson.dumps(entry, default=str).decode()

    def format(self, record: logging.LogRecord) -> str:
        attributes = record.__dict__
        keys = list(attributes)
        # A record's standard attributes come first, in LogRecord.__init__'s order, and the
        # `extra` fields after them: skip the ~20 standard ones in one comparison when they are
        # where they always are.
        if keys[: len(_STANDARD)] == _STANDARD:
            keys = keys[len(_STANDARD) :]
        fields = {k: attributes[k] for k in keys if k not in _RESERVED and not k.startswith("_")}
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(
            record.created, record.levelname, record.name, record.getMessage(), fields, exception
        )


def configure_logging(level: str) -> None:
    # httpx/httpcore log each request's URL at INFO/DEBUG: FHIR search URLs carry patient ids.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root = logging.getLogger(ROOT_LOGGER)
    root.setLevel(level)
    if not any(getattr(h, "_ecmo", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._ecmo = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def log_fields(logger: logging.Logger, message: str, fields: Mapping[str, Any]) -> None:
    """One INFO record with these fields, through logging's own handlers and filters.

    What logger.info(message, extra=fields) does, less the search for the caller's file and line
    (Logger.findCaller walks the stack; our JSON lines carry no caller): the record is made with
    Logger.makeRecord and passed to Logger.handle, both public, so levels, `disabled`, filters and
    every handler are obeyed as for any record. Used for the one access line per request.
    """
    if logger.isEnabledFor(logging.INFO):  # also False when the logger is disabled
        logger.handle(
            logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None, extra=fields)
        )
