"""A pytest plugin: fail any test during which a Flask app answered 500-599 (503 excepted: it is the
documented "model / service not ready" answer, which readiness tests provoke on purpose).

Load it for the whole suite with `pytest_plugins = ["tests.contract.no_5xx"]` in tests/conftest.py.
A test that provokes a 500 on purpose (the catch-all handler's own test) requests the
`allow_server_errors` fixture. Under gunicorn the same rule is schemathesis' not_a_server_error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, request, request_finished

ALLOWED_5XX = {503}


@pytest.fixture
def allow_server_errors() -> None:
    """Request this fixture in a test that provokes a 5xx on purpose."""


@pytest.fixture(autouse=True)
def _no_server_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    seen: list[str] = []

    def record(sender: Flask, response: Response, **extra: Any) -> None:
        if response.status_code >= 500 and response.status_code not in ALLOWED_5XX:
            seen.append(f"{request_method()} {request_path()} -> {response.status_code}")

    request_finished.connect(record)
    try:
        yield
    finally:
        request_finished.disconnect(record)
    if seen and "allow_server_errors" not in request.fixturenames:
        pytest.fail("the service answered with a server error:\n" + "\n".join(seen))


def request_method() -> str:
    return request.method


def request_path() -> str:
    return request.full_path
