"""The nginx configuration service/front.py writes: nginx itself accepts it, and it carries the
limits the service documents. Its behaviour under load: tests/deploy/test_process_model.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service.config import load_settings
from service.front import FrontError, local_address, nginx_binary, nginx_conf


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
