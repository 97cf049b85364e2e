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
        # LogRecord's own msecs formula, so a line written by AccessLog reads like a record's.
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
    # Our lines carry no caller file/line, so the logging module need not find the caller of
    # every record (the logging HOWTO's "Optimization" section): that walks the stack and was a
    # tenth of a prediction's CPU time. (Process and thread fields stay: gunicorn's own log
    # format prints %(process)d, which a None would break.)
    logging._srcfile = None
    root = logging.getLogger(ROOT_LOGGER)
    root.setLevel(level)
    if not any(getattr(h, "_ecmo", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._ecmo = True  # type: ignore[attr-defined]
        root.addHandler(handler)


class AccessLog:
    """The one INFO line per request, as logger `name` would write it through logging.

    When the only place such a record would go is the JSON handler configure_logging installed
    (no other handler or filter on the way, which is how the service runs), the line is formatted
    by that handler's formatter and written to its stream under its lock, without building a
    LogRecord and passing it down logging's handler chain. Under load that chain cost a few
    points of the service/floor ratio (docs/benchmark.md). Anything else that would see the record
    (a test's capture handler, a handler or filter added by whoever embeds the app) gets it
    through logging, unchanged. Levels and `disabled` are obeyed either way.
    """

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _sole_handler(self) -> logging.StreamHandler[Any] | None:
        """The JSON handler, if a record of this logger would reach it and nothing else."""
        logger = self._logger
        found: logging.StreamHandler[Any] | None = None
        node: logging.Logger | None = logger
        while node is not None:
            if node.filters:
                return None
            for handler in node.handlers:
                if (
                    found is not None
                    or type(handler) is not logging.StreamHandler
                    or not getattr(handler, "_ecmo", False)
                    or type(handler.formatter) is not JsonFormatter
                    or handler.filters
                    or handler.level > logging.INFO
                ):
                    return None
                found = handler
            node = node.parent if node.propagate else None
        return found

    def info(self, message: str, fields: Mapping[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):  # also False when the logger is disabled
            return
        handler = self._sole_handler()
        if handler is None:
            logger.info(message, extra=dict(fields))
            return
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
        line = formatter.line(time.time(), "INFO", logger.name, message, fields)
        # What StreamHandler.emit does with a formatted record, under Handler.handle's lock.
        with handler.lock:  # type: ignore[union-attr]
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except RecursionError:
                raise
            except Exception:
                handler.handleError(
                    logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None)
                )
