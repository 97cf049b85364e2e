"""Run the real gunicorn (the repository's config) on 127.0.0.1 for a test, and always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
GUNICORN_ARGS = ["-c", "service/gunicorn_conf.py", "service.app:create_app()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(p) for p in out.split()]


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if predicate():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def gunicorn(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    workers: int = 2,
    args: list[str] | None = None,
    ready_path: str = "/health/ready",
    start_timeout: float = 60.0,
) -> Iterator[Server]:
    port = free_port()
    multiproc = tmp_path / f"prom-{port}"
    multiproc.mkdir()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ECMO_")},
        "ECMO_BIND": f"127.0.0.1:{port}",
        "ECMO_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        **(env or {}),
    }
    log_path = tmp_path / f"gunicorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *(args or GUNICORN_ARGS)],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(
            lambda: requests.get(server.url + ready_path, timeout=2).status_code == 200,
            start_timeout,
            f"gunicorn on port {port} to be ready",
        )
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
