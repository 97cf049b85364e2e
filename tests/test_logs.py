"""log_fields: the per-request access line, a record through logging's public API without the
caller lookup; and the line a request writes."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.logs import ROOT_LOGGER, configure_logging, log_fields
from tests.factories import ICH_INPUTS

FIELDS = {"request_id": "r-1", "method": "POST", "route": "/x", "status": 200, "model": None}


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    """The service's JSON handler, writing to a buffer for the test."""
    configure_logging("INFO")
    handler = next(h for h in logging.getLogger(ROOT_LOGGER).handlers if getattr(h, "_ecmo", 0))
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Nothing but the JSON handler on the way of an `ecmo.*` record, as under gunicorn. pytest
    attaches its capture handlers (to the root logger) once fixtures are set up, so this is
    entered inside the test."""
    ecmo, root = logging.getLogger(ROOT_LOGGER), logging.getLogger()
    saved = {logger: logger.handlers[:] for logger in (ecmo, root)}
    ecmo.handlers = [h for h in ecmo.handlers if getattr(h, "_ecmo", False)]
    root.handlers = []
    try:
        yield
    finally:
        for logger, handlers in saved.items():
            logger.handlers = handlers


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_line_is_the_line_logger_info_writes_without_the_caller_lookup(
    json_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("ecmo.test_access")
    with alone():
        logger.info("request", extra=FIELDS)
        monkeypatch.setattr(
            logging.Logger, "findCaller", lambda *a, **k: pytest.fail("caller looked up")
        )
        log_fields(logger, "request", FIELDS)
    via_info, direct = lines(json_stream)
    assert list(direct) == list(via_info) == ["ts", "level", "logger", "message", *FIELDS]
    assert {**direct, "ts": ""} == {**via_info, "ts": ""}


def test_levels_and_disabled_are_obeyed(json_stream: io.StringIO) -> None:
    logger = logging.getLogger("ecmo.test_levels")
    with alone():
        logger.setLevel(logging.WARNING)
        log_fields(logger, "request", FIELDS)
        logger.setLevel(logging.NOTSET)
        logger.disabled = True
        log_fields(logger, "request", FIELDS)
        logger.disabled = False
        log_fields(logger, "request", FIELDS)
    assert [line["message"] for line in lines(json_stream)] == ["request"]


def test_other_handlers_and_filters_see_the_record(json_stream: io.StringIO) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    json_handler = next(
        h for h in logging.getLogger(ROOT_LOGGER).handlers if getattr(h, "_ecmo", 0)
    )
    logger = logging.getLogger("ecmo.test_listeners")
    keep = Keep()
    for attach, detach in (
        (lambda: logger.addHandler(keep), lambda: logger.removeHandler(keep)),
        # A filter that drops every record: nothing may be written.
        (lambda: logger.addFilter(lambda r: False), lambda: logger.filters.clear()),
        (lambda: json_handler.addFilter(lambda r: False), lambda: json_handler.filters.clear()),
    ):
        attach()
        try:
            with alone():
                log_fields(logger, "request", FIELDS)
        finally:
            detach()
    assert [r.__dict__["request_id"] for r in seen] == ["r-1"]
    assert [line["request_id"] for line in lines(json_stream)] == ["r-1"]


def test_a_request_through_the_app_writes_one_access_line(
    client: FlaskClient, json_stream: io.StringIO
) -> None:
    client.post(
        "/v1/models/ich/predict", json={"inputs": ICH_INPUTS}, headers={"X-Request-ID": "d"}
    )
    (line,) = [x for x in lines(json_stream) if x["logger"] == "ecmo.access"]
    assert {k: line[k] for k in ("request_id", "method", "route", "status", "model")} == {
        "request_id": "d",
        "method": "POST",
        "route": "/v1/models/<name>/predict",
        "status": 200,
        "model": "ich",
    }
    assert isinstance(line["latency_ms"], float)
