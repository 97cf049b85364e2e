"""Issue 19 item 1: a SIGHUP whose new app cannot be built leaves the master serving the old one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from service.config import ConfigError
from tests.test_gunicorn_conf import load_conf


def test_a_reload_that_fails_keeps_the_app_already_serving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = load_conf(monkeypatch, tmp_path / "prom")
    old_app = object()
    logged: list[str] = []

    def load() -> object:
        raise ConfigError("ECMO_CDS_JWKS_FILE: not a usable JWK Set")

    server = SimpleNamespace(
        app=SimpleNamespace(callable=old_app, load=load),
        log=SimpleNamespace(exception=logged.append),
    )
    conf.on_reload(server)  # must not raise: gunicorn's master would exit
    assert server.app.callable is old_app
    assert logged and "reload failed" in logged[0]


def test_a_reload_that_succeeds_swaps_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = load_conf(monkeypatch, tmp_path / "prom")
    new_app = object()
    server = SimpleNamespace(app=SimpleNamespace(callable=object(), load=lambda: new_app))
    conf.on_reload(server)
    assert server.app.callable is new_app
