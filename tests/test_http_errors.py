"""gunicorn's own error answers in the problem shape, with an access line the 5xx log check reads."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from service.http_errors import problem_bytes, write_problem
from tests.server import server_errors


def split(raw: bytes) -> tuple[list[str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), json.loads(body)


def test_the_answer_is_problem_json_with_the_status_and_a_request_id() -> None:
    head, body = split(problem_bytes(431, "Request Header Fields Too Large", "too big", "abc"))
    assert head[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert "Content-Type: application/problem+json" in head
    assert "Connection: close" in head and "X-Request-ID: abc" in head
    assert "X-Content-Type-Options: nosniff" in head and "Cache-Control: no-store" in head
    assert body["status"] == 431 and body["code"] == "http_431" and body["request_id"] == "abc"
    assert body["errors"] == [{"path": "", "message": "too big", "rule": "http"}]


def test_a_server_error_does_not_echo_gunicorns_message() -> None:
    _, body = split(problem_bytes(500, "Internal Server Error", "Traceback ...", "abc"))
    assert "Traceback" not in json.dumps(body)


def test_a_long_message_is_cut() -> None:
    _, body = split(problem_bytes(400, "Bad Request", "x" * 10_000, "abc"))
    assert len(str(body["detail"])) == 200


def test_the_answer_is_written_and_logged_as_an_access_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    left, right = socket.socketpair()
    with left, right, caplog.at_level(logging.INFO, logger="ecmo.access"):
        write_problem(left, 502, "Bad Gateway", "")
        left.close()
        raw = b"".join(iter(lambda: right.recv(65536), b""))
    head, body = split(raw)
    assert head[0] == "HTTP/1.1 502 Bad Gateway" and body["status"] == 502
    record = next(r for r in caplog.records if r.name == "ecmo.access")
    assert record.status == 502 and record.route == "<http>"  # type: ignore[attr-defined]
    line = json.dumps({"logger": "ecmo.access", "status": record.status})  # type: ignore[attr-defined]
    assert server_errors(line) == [line]
