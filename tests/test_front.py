"""The nginx configuration service/front.py writes: nginx itself accepts it, it carries the
limits the service documents, and every error nginx answers itself is in the problem shape and
logged as an access line. Its behaviour under load: tests/deploy/test_process_model.py; the
hostile requests through it: tests/test_hostile_http.py."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from service.config import load_settings
from service.front import (
    ERROR_PREFIX,
    Front,
    FrontError,
    local_address,
    nginx_binary,
    nginx_conf,
    pages,
    relay_log,
)
from tests.server import free_port, server_errors


def _conf(tmp_path: Path, **env: str) -> str:
    settings = load_settings({"ECMO_BIND": "0.0.0.0:8000", **env})
    return nginx_conf(settings, tmp_path, tmp_path / "gunicorn.sock", "127.0.0.1:9100")


@pytest.mark.parametrize("metrics_bind", ["", "0.0.0.0:9100"])
def test_nginx_accepts_the_configuration(tmp_path: Path, metrics_bind: str) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(_conf(tmp_path, ECMO_METRICS_BIND=metrics_bind))
    result = subprocess.run(
        [nginx_binary(), "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_limits_and_timeouts_come_from_the_settings(tmp_path: Path) -> None:
    text = _conf(tmp_path, ECMO_MAX_BODY_BYTES="65536", ECMO_CLIENT_TIMEOUT="7", ECMO_TIMEOUT="40")
    for line in (
        "client_max_body_size 65536;",
        "client_body_buffer_size 65536;",
        "client_header_timeout 7s;",
        "client_body_timeout 7s;",
        "proxy_read_timeout 45s;",
        "proxy_request_buffering on;",
        f"server unix:{tmp_path / 'gunicorn.sock'};",
        "listen 0.0.0.0:8000",
        '"allowed": "at most 65536 bytes"',
        'proxy_set_header X-Forwarded-Proto "";',
    ):
        assert line in text, line
    assert "location = /metrics { proxy_pass http://ops; }" in text
    own_port = _conf(tmp_path, ECMO_METRICS_BIND="0.0.0.0:9100")
    assert "location = /metrics { default_type application/problem+json;" in own_port
    assert "return 404" in own_port and "location = /metrics { proxy_pass" not in own_port


def test_local_address_reaches_a_wildcard_bind() -> None:
    assert local_address("0.0.0.0:9100") == "127.0.0.1:9100"
    assert local_address("[::]:9100") == "[::1]:9100"
    assert local_address("10.1.2.3:9100") == "10.1.2.3:9100"


def test_a_missing_nginx_fails_fast_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.front.shutil.which", lambda name: None)
    monkeypatch.setattr("service.front.os.path.exists", lambda path: False)
    with pytest.raises(FrontError, match="ECMO_PROXY=off"):
        nginx_binary()


# --- nginx's own answers ------------------------------------------------------------------------

# Every status nginx's HTTP core can send without a location of ours asking for it
# (ngx_http_special_response.c), but for the TLS-only ones (495-497), redirects, 405 (TRACE is
# handed to the app) and the ones only modules we do not use send (401/403/409/410/412/416/429).
NGINX_OWN_STATUSES = {400, 404, 408, 411, 413, 414, 494, 500, 501, 502, 503, 504, 505}


def test_every_status_nginx_answers_itself_has_a_problem_page(tmp_path: Path) -> None:
    settings = load_settings({"ECMO_MAX_BODY_BYTES": "4096"})
    table = pages(settings)
    assert set(table) == NGINX_OWN_STATUSES
    text = _conf(tmp_path)
    for internal, variants in table.items():
        assert f"error_page {internal} = {ERROR_PREFIX}{internal};" in text
        for page in variants.values():
            for oip in (False, True):
                body = page.body(oip)
                assert body["status"] == page.status and body["code"] and body["errors"]
                assert {"path", "message", "rule"} <= set(body["errors"][0])
                assert ("error" in body) == (oip and not page.code.startswith("http_"))
    # the header limit is answered 431 (nginx's own 494, which it would send as 400); a transfer
    # coding or HTTP version nginx does not speak 400 as gunicorn does (the client's error, no 5xx)
    assert table[494][""].status == 431
    assert table[501][""].status == table[505][""].status == 400
    assert table[413][""].allowed == "at most 4096 bytes"


def _front(tmp_path: Path, socket_path: Path, **env: str) -> tuple[Front, int]:
    port = free_port()
    tmp_path.mkdir()
    settings = load_settings({"ECMO_BIND": f"127.0.0.1:{port}", **env})
    closed = free_port()  # nothing listens there: the master's listener is "down"
    return Front.start(settings, tmp_path, socket_path, f"127.0.0.1:{closed}"), port


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_no_worker_and_a_late_worker_are_problems_and_access_lines(tmp_path: Path) -> None:
    records = _Records()
    ecmo = logging.getLogger("ecmo")
    ecmo.addHandler(records)
    previous = ecmo.level
    ecmo.setLevel(logging.INFO)
    late = tmp_path / "late.sock"
    listener = socket.socket(socket.AF_UNIX)  # accepts into its backlog, never answers
    listener.bind(str(late))
    listener.listen(8)
    fronts = []
    try:
        missing, port = _front(tmp_path / "a", tmp_path / "missing.sock")
        fronts.append(missing)
        for path, oip in (("/v1/models", False), ("/v2/health/live", True)):
            r = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert r.status_code == 502
            assert r.headers["Content-Type"] == "application/problem+json"
            body = r.json()
            assert body["code"] == "no_worker" and body["request_id"] == r.headers["X-Request-ID"]
            assert ("error" in body) == oip
        stalled, port = _front(
            tmp_path / "b", late, ECMO_TIMEOUT="1", ECMO_FHIR_DEADLINE_SECONDS="0.5"
        )
        fronts.append(stalled)
        r = requests.post(f"http://127.0.0.1:{port}/v1/models/x/predict", json={}, timeout=20)
        assert r.status_code == 504 and r.json()["code"] == "worker_timeout"
    finally:
        for front in fronts:
            front.stop(timeout=10)
        listener.close()
        ecmo.removeHandler(records)
        ecmo.setLevel(previous)
    time.sleep(0.5)  # the relay threads read the last lines before nginx's pipe closed
    access = [r for r in records.records if r.name == "ecmo.access"]
    assert sorted(r.status for r in access) == [502, 502, 504]  # type: ignore[attr-defined]
    assert all(r.route == "<http>" for r in access)  # type: ignore[attr-defined]
    line = json.dumps({"logger": "ecmo.access", "status": 502, "route": "<http>"})
    assert server_errors(line) == [line]
    said = [r.getMessage() for r in records.records if r.name == "ecmo.nginx"]
    assert any("upstream" in m for m in said), said
    assert not any("request:" in m or "/v1/models" in m for m in said), said


def test_the_relay_keeps_going_past_a_line_it_cannot_read(caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        b'{"request_id": "a", "status": 413, "route": "<http>", "request_time": "0.002"}\n',
        b"{not json\n",
        b"2026/12/04 20:00:00 [error] 7#7: *3 upstream timed out, client: 1.2.3.4, "
        b'request: "GET /v1/models?patient=1 HTTP/1.1"\n',
    ]
    with caplog.at_level(logging.INFO, logger="ecmo"):
        relay_log(lines)
    access = next(r for r in caplog.records if r.name == "ecmo.access")
    assert access.status == 413 and access.latency_ms == 2.0  # type: ignore[attr-defined]
    errors = [r for r in caplog.records if r.name == "ecmo.nginx"]
    assert [r.levelname for r in errors] == ["WARNING", "ERROR"]
    assert errors[1].getMessage() == "upstream timed out"
