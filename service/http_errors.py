"""gunicorn's own error answers in the service's problem+json shape.

Some requests never reach the app: gunicorn's HTTP parser refuses them first (a request line over
limit_request_line: 414; headers over limit_request_field_size or more than limit_request_fields:
431; a malformed request line or header: 400; an unsupported Transfer-Encoding: 501; ...). gunicorn
answers those from its worker's handle_error through gunicorn.util.write_error, with an HTML page.
install() replaces that one function, in the worker, by write_problem below, which answers with
the same status and reason in the body every other error has:

    {"type": "about:blank", "title": <reason>, "status": <status>, "detail": <gunicorn's message>,
     "code": "http_<status>", "errors": [{"path": "", "message": ..., "rule": "http"}],
     "request_id": <fresh>}

and writes the access-log line the app would have written (route "<http>"), so an HTTP-layer 5xx
is found by the same log checks as the app's own. `Connection: close` as gunicorn does: after a
parse error the connection's framing is unknown.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from service.logs import log_fields

access_log = logging.getLogger("ecmo.access")
MAX_DETAIL = 200


def problem_bytes(status: int, reason: str, message: str, request_id: str) -> bytes:
    detail = (message or reason)[:MAX_DETAIL]
    if status >= 500:
        detail = "the service failed; see its logs"
    body = json.dumps(
        {
            "type": "about:blank",
            "title": reason,
            "status": status,
            "detail": detail,
            "code": f"http_{status}",
            "errors": [{"path": "", "message": detail, "rule": "http"}],
            "request_id": request_id,
        }
    ).encode("ascii")
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        # what service/api/security.py adds to every answer of the app
        "X-Content-Type-Options: nosniff\r\n"
        "Cache-Control: no-store\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature and job, with the service's error body."""
    from gunicorn import util

    request_id = os.urandom(16).hex()
    log_fields(
        access_log,
        "request",
        {"request_id": request_id, "route": "<http>", "status": status_int},
    )
    util.write_nonblock(sock, problem_bytes(status_int, reason, mesg, request_id))


def install() -> None:
    """Called in each gunicorn worker (post_worker_init): gunicorn's handle_error looks the
    function up on the module at each call."""
    from gunicorn import util

    util.write_error = write_problem
