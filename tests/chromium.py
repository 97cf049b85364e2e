"""Headless Chromium for tests, driven over the DevTools protocol (websocket-client).

`open_page(url)` loads a page in a fresh browser (its own --user-data-dir, no network beyond what
the page asks of our server) and returns what it saw: console messages and uncaught exceptions,
log entries (failed loads, CSP violations), every URL it requested, and a screenshot. Chromium is
the Debian package `chromium` (.ci/run installs it).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.server import _die_with_parent, wait_until

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is missing: .ci/run installs it (Debian package chromium)")


@dataclass
class PageVisit:
    errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions and error-level log entries (failed loads, CSP)."""
    requested: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    result: Any = None
    """The value of the `ready` expression once it held."""


class _Cdp:
    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply.get("result", {}).get("value")

    def close(self) -> None:
        self.ws.close()


@contextlib.contextmanager
def _browser() -> Iterator[str]:
    """A headless Chromium with a fresh profile; yields its DevTools HTTP base URL."""
    profile = Path(tempfile.mkdtemp(prefix="ecmo-chromium-"))
    proc = subprocess.Popen(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_until(
            lambda: port_file.exists() and port_file.read_text().strip() != "", 30, "Chromium"
        )
        port = port_file.read_text().split()[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def _describe(event: dict[str, Any]) -> str | None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return (
            f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
        )
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        args = " ".join(
            str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
        )
        return f"console.{params['type']}: {args}"
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return f"log: {entry.get('text')} ({entry.get('url', '')})"
    return None


def open_page(url: str, ready: str, timeout: float = 30.0) -> PageVisit:
    """Load `url`, wait until the JavaScript expression `ready` is truthy, then screenshot."""
    visit = PageVisit()
    with _browser() as devtools:
        request = urllib.request.Request(f"{devtools}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            target = json.loads(response.read())
        cdp = _Cdp(target["webSocketDebuggerUrl"])
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.call(f"{domain}.enable")
            cdp.call("Page.navigate", url=url)
            deadline = time.monotonic() + timeout
            while not (result := cdp.evaluate(ready)):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url}: {ready} never held")
                time.sleep(0.2)
            visit.result = result
            time.sleep(0.5)  # late console errors and image loads
            cdp.evaluate("0")  # drain events
            shot = cdp.call("Page.captureScreenshot", format="png")
            visit.screenshot = base64.b64decode(shot["data"])
        finally:
            cdp.close()
        for event in cdp.events:
            if event.get("method") == "Network.requestWillBeSent":
                visit.requested.append(event["params"]["request"]["url"])
            problem = _describe(event)
            if problem:
                visit.errors.append(problem)
    return visit
