"""The "why this risk" page in headless Chromium: served over real HTTP by the app, opened from
the link of a real CDS card, screenshotted, and no console message at all (CSP violations,
failed loads and script errors all land in the console). A negative control proves the console
check sees what it must. Chromium is Debian's `chromium` (.ci/run installs it when missing).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from service.app import create_app
from service.config import Settings
from tests.cds.fhir import cds_request, ich_prefetch

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    raise RuntimeError("Chromium is needed for this test (.ci/run installs Debian's chromium)")


def shoot(url: str, out: Path, tmp: Path) -> list[str]:
    """Screenshot url to out; return every console message of the page."""
    profile = tmp / f"profile-{out.stem}"
    result = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=900,1600",
            f"--screenshot={out}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), result.stderr[-2000:]
    return [m.group(1) for line in result.stderr.splitlines() if (m := CONSOLE.search(line))]


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def png_is_a_picture(path: Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 800
    assert pixels.std() > 0.05  # not a blank page


def test_console_check_sees_csp_violations_and_errors(tmp_path: Path) -> None:
    page = (
        b"<!doctype html><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'\">"
        b"<p style='color:red'>x</p><script>console.error('boom')</script>"
    )

    class Bad(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Bad)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        messages = shoot(f"http://127.0.0.1:{server.server_port}/", tmp_path / "bad.png", tmp_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert any("Content Security Policy" in m for m in messages), messages


def test_why_page_in_chromium(settings: Settings, tmp_path: Path) -> None:
    app = create_app(replace(settings, explain_keys=(Fernet.generate_key().decode(),)))
    with serving(app) as base:
        card = httpx.post(f"{base}/cds-services/ecmo-ich-risk", json=cds_request(ich_prefetch()))
        assert card.status_code == 200
        url = card.json()["cards"][0]["links"][0]["url"]
        assert url.startswith(f"{base}/why/")
        shot = tmp_path / "why.png"
        messages = shoot(url, shot, tmp_path)
    assert messages == []
    png_is_a_picture(shot)
    keep = Path("/tmp/ecmo-why-page.png")  # for a person to look at after the run
    with contextlib.suppress(OSError):
        shutil.copy(shot, keep)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
