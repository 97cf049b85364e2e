"""Real gunicorn on 127.0.0.1 for the deployment tests, plus a bounded load client.

Servers come from tests/server.py (own process group, PR_SET_PDEATHSIG, stopped in a finally).
Requests use http.client with one connection per request (as the sync workers close after each
response), so a request is "accepted" exactly when a worker has read it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.factories import WEANING_INPUTS
from tests.server import (
    REPO,
)

DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


# --- the image's contract, parsed from the Dockerfile ------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    workdir: str
    env: dict[str, str]
    cmd: list[str]
    healthcheck: list[str]
    copies: list[tuple[str, str]]


def _final_stage(text: str) -> list[str]:
    """Instruction lines (continuations joined, comments dropped) of the last FROM stage."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    starts = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    return lines[starts[-1] :]


def _env_pairs(args: str, env: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"ENV {args!r}: use the key=value form")
        # $VAR / ${VAR} expand against what is defined so far, as Docker does.
        # $VAR / ${VAR} expand against what is defined so far, as Docker does; a variable of the
        # base image (PATH) stays as written for host_env() to fill in.
        known = {**env, **out}

        def expand(m: re.Match[str], known: dict[str, str] = known) -> str:
            return known.get(m.group(1), m.group(0))

        out[key] = re.sub(r"\$\{?(\w+)\}?", expand, value)
    return out


def parse_dockerfile(path: Path = DOCKERFILE) -> ImageSpec:
    workdir = "/"
    env: dict[str, str] = {}
    cmd: list[str] = []
    health: list[str] = []
    copies: list[tuple[str, str]] = []
    for line in _final_stage(path.read_text()):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "WORKDIR":
            workdir = rest.strip()
        elif word == "ENV":
            env.update(_env_pairs(rest, env))
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "HEALTHCHECK":
            health = json.loads(rest[rest.index("CMD ") + 4 :])
        elif word == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            copies.append((parts[0], parts[-1]))
    return ImageSpec(workdir, env, cmd, health, copies)


def host_env(image_env: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """The image's environment translated to this machine: the image's venv (/opt/venv/bin) is
    the test interpreter's venv; everything else is passed as written, then the overrides."""
    env = {k: v.replace("/opt/venv/bin", str(VENV_BIN)) for k, v in image_env.items()}
    base_path = os.environ.get("PATH", "/usr/bin:/bin")
    env["PATH"] = env.get("PATH", "$PATH").replace("${PATH}", base_path).replace("$PATH", base_path)
    env.setdefault("HOME", os.environ.get("HOME", "/tmp"))
    env.update(overrides)
    return env


# --- servers: tests/server.py ------------------------------------------------------------------


# --- requests ---------------------------------------------------------------------------------


def request(
    port: int, method: str, path: str, body: Any = None, timeout: float = 10.0
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        ctype = response.getheader("Content-Type", "")
        return response.status, json.loads(raw) if "json" in ctype else raw.decode()
    finally:
        conn.close()


@dataclass
class Result:
    started: float
    finished: float
    status: int | None
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class LoadClient:
    """`threads` clients sending `make()` requests back to back, until `max_requests` were sent
    in all, `max_seconds` passed, or stop() was called. Every outcome is recorded."""

    port: int
    make: Callable[[int], tuple[str, str, Any]]
    threads: int = 4
    max_requests: int = 2000
    max_seconds: float = 20.0
    timeout: float = 20.0
    results: list[Result] = field(default_factory=list)
    _sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pool: list[threading.Thread] = field(default_factory=list)

    def _next(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or self._sent >= self.max_requests:
                return None
            self._sent += 1
            return self._sent

    def _run(self, deadline: float) -> None:
        while time.monotonic() < deadline and (n := self._next()) is not None:
            method, path, body = self.make(n)
            started = time.monotonic()
            try:
                status, data = request(self.port, method, path, body, self.timeout)
                result = Result(started, time.monotonic(), status, data)
            except (OSError, http.client.HTTPException) as exc:
                result = Result(started, time.monotonic(), None, error=repr(exc))
            with self._lock:
                self.results.append(result)

    def start(self) -> LoadClient:
        deadline = time.monotonic() + self.max_seconds
        self._pool = [
            threading.Thread(target=self._run, args=(deadline,), daemon=True)
            for _ in range(self.threads)
        ]
        for t in self._pool:
            t.start()
        return self

    def stop(self) -> LoadClient:
        self._stop.set()
        for t in self._pool:
            t.join(self.timeout + 5)
        return self

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    @property
    def sent(self) -> int:
        return len(self.snapshot())

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.snapshot() if not r.ok]

    def counts(self) -> str:
        done = self.snapshot()
        ok = sum(r.ok for r in done)
        return f"sent={len(done)} succeeded={ok} failed={len(done) - ok}"


def predict_weaning(_: int) -> tuple[str, str, Any]:
    return "POST", "/v1/models/weaning/predict", {"inputs": WEANING_INPUTS}
