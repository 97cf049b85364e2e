"""ServiceFlask.ensure_sync: Flask's answer, decided once per plain function."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from flask import Flask

from service.app import ServiceFlask


def test_plain_functions_are_returned_as_flask_returns_them_and_asked_about_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = ServiceFlask(__name__)
    asked: list[Any] = []
    original = Flask.ensure_sync

    def counting(self: Flask, func: Any) -> Any:
        asked.append(func)
        return original(self, func)

    monkeypatch.setattr(Flask, "ensure_sync", counting)

    def view() -> str:
        return "ok"

    assert app.ensure_sync(view) is view and app.ensure_sync(view) is view
    assert asked == [view]


def test_other_callables_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    app = ServiceFlask(__name__)

    class Hooks:
        def hook(self) -> None: ...

    hooks = Hooks()
    assert app.ensure_sync(hooks.hook) == hooks.hook
    assert app.ensure_sync(hooks.hook) == hooks.hook
    assert app._sync == {}


def test_a_coroutine_function_gets_flasks_treatment() -> None:
    async def view() -> str:
        await asyncio.sleep(0)
        return "ok"

    def outcome(app: Flask) -> Any:
        try:
            return app.ensure_sync(view)() is not view
        except RuntimeError as exc:  # flask[async] (asgiref) not installed: Flask says so
            return str(exc)

    assert outcome(ServiceFlask(__name__)) == outcome(Flask(__name__))
