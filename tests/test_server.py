"""The real-server helper fails a test whose gunicorn answered with a server error."""

from __future__ import annotations

import json

from tests.server import server_errors


def line(status: int, logger: str = "ecmo.access") -> str:
    return json.dumps({"level": "INFO", "logger": logger, "message": "request", "status": status})


def test_a_5xx_in_the_access_log_is_found_and_503_and_other_lines_are_not() -> None:
    logs = "\n".join(
        [
            "[2026-12-02 04:00:00 +0000] [1] [INFO] Booting worker with pid: 2",
            line(200),
            line(503),
            line(500, logger="ecmo.errors"),
            line(502),
            "not json {",
        ]
    )
    assert server_errors(logs) == [line(502)]
