"""A real FHIR R4 server process for tests, and a tiny misbehaving HTTP server.

FhirServer runs tests/fhirserver/server.cjs (Medplum's FHIR router over its in-memory repository)
with node on 127.0.0.1 and a free port; `npm ci` installs its pinned packages on first use. It
checks bearer tokens (TOKEN reads and writes; FORBIDDEN_TOKEN gets 403; anything else 401) and
pages searchsets with next links. Misbehaving serves the failure modes a real server should not
have: no answer, a closed connection, 500, HTML, JSON that is not FHIR.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.server import _die_with_parent, free_port

HERE = Path(__file__).resolve().parent
TOKEN = "test-token-7f3c9a"
FORBIDDEN_TOKEN = "test-token-no-scope"


def ensure_installed() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError(
            "node and npm are needed for the FHIR server tests (.ci/run installs them)"
        )
    if not (HERE / "node_modules" / "@medplum" / "fhir-router").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=300,
        )


@dataclass
class FhirServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str = TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
            timeout=10,
        )

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        """PUT with the resource's id (so tests know it), else POST."""
        with self.client() as c:
            if "id" in resource:
                r = c.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            else:
                r = c.post(f"/{resource['resourceType']}", json=resource)
        assert r.status_code in (200, 201), r.text
        out: dict[str, Any] = r.json()
        return out

    def create_all(self, resources: list[dict[str, Any]]) -> None:
        """PUT every resource (by id) in one batch Bundle."""
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in resources
            ],
        }
        with self.client() as c:
            r = c.post("/", json=batch)
        assert r.status_code == 200, r.text
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert all(s.startswith("20") for s in statuses), statuses

    def validate(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """Issues of severity error from @medplum/core's R4 validator (empty: valid)."""
        with self.client() as c:
            r = c.post(f"/{resource['resourceType']}/$validate", json=resource)
        issues: list[dict[str, Any]] = r.json().get("issue", [])
        return [i for i in issues if i.get("severity") in ("error", "fatal")]


@contextlib.contextmanager
def fhir_server(startup_timeout: float = 60.0) -> Iterator[FhirServer]:
    ensure_installed()
    port = free_port()
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    # Medplum's core uses the global WebSocket, which node has by default only from 22 on.
    flags = (
        ["--experimental-websocket"] if int(version.stdout.lstrip("v").split(".")[0]) < 22 else []
    )
    proc = subprocess.Popen(
        ["node", *flags, "server.cjs", str(port)],
        cwd=HERE,
        env={
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "FHIR_TEST_TOKEN": TOKEN,
            "FHIR_TEST_TOKEN_FORBIDDEN": FORBIDDEN_TOKEN,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + startup_timeout
        line = b""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith(b"listening") or not line:
                break
        if not line.startswith(b"listening"):
            raise RuntimeError(f"FHIR server did not start: {line!r}")
        # keep draining its output so it never blocks on a full pipe
        drain = proc.stdout
        threading.Thread(target=lambda: drain.read(), daemon=True).start()
        yield FhirServer(proc, port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


class _Handler(BaseHTTPRequestHandler):
    server: _MisbehavingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits += 1
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        mode = self.server.mode
        if mode == "hang":
            self.server.release.wait(30)
            return
        if mode == "drip":  # headers at once, then a byte every 0.3 s: never a read timeout
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):
                if self.server.release.wait(0.3):
                    return
                with contextlib.suppress(OSError):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            return
        status, ctype, body = {
            "500": (500, "application/fhir+json", json.dumps({"resourceType": "OperationOutcome"})),
            "503": (503, "text/plain", "maintenance"),
            "html": (200, "text/html", "<html><body>Login</body></html>"),
            "not-json": (200, "application/fhir+json", "{not json"),
            "not-bundle": (200, "application/fhir+json", json.dumps({"resourceType": "Patient"})),
            "redirect": (302, "text/plain", ""),
        }[mode]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if mode == "redirect":
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        data = body.encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _MisbehavingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    mode = "500"
    hits = 0
    authorizations: list[str]
    release: threading.Event


@contextlib.contextmanager
def misbehaving(mode: str) -> Iterator[_MisbehavingHTTPServer]:
    srv = _MisbehavingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.mode = mode
    srv.authorizations = []
    srv.release = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)
