"""Start and stop gunicorn on 127.0.0.1, find its workers, read their peak RSS."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO / "service" / "gunicorn_conf.py"
HOST = "127.0.0.1"
# Older OpenBLAS builds need these on some CPUs; they slow a current numpy, so a benchmark runs
# its servers without them (see docs/benchmark.md). --keep-openblas-env keeps them.
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _status_field(pid: int, key: str) -> int | None:
    """A kB field of /proc/<pid>/status (VmHWM, VmRSS), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def _pss_kb(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def children(pid: int) -> list[int]:
    """The gunicorn master's workers: its children other than the nginx it runs in front."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and stat.split("(", 1)[1].rsplit(")", 1)[0] != "nginx":
            found.append(int(entry.name))
    return sorted(found)


@dataclass
class WorkerMemory:
    pid: int
    peak_rss_mb: float
    """VmHWM: the most resident memory the worker ever had (shared pages from the master count)."""
    rss_mb: float
    pss_mb: float | None
    """Proportional set size: shared pages divided among the processes that share them."""


@dataclass
class Server:
    name: str
    app: str
    workers: int
    threads: int | None
    log_path: Path
    keep_openblas_env: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    worker_pids_at_start: list[int] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    repo: Path = REPO
    """The checkout to serve (bench.compare starts another one with its own virtualenv)."""
    python: str = sys.executable
    _prom_dir: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ECMO_RUN_DIR", None)  # each server makes its own (nginx config, sockets)
        if not self.keep_openblas_env:
            for key in OPENBLAS_ENV:
                env.pop(key, None)
        self._prom_dir = tempfile.mkdtemp(prefix=f"bench-prom-{self.name}-")
        env["PROMETHEUS_MULTIPROC_DIR"] = self._prom_dir
        env["ECMO_BIND"] = f"{HOST}:{self.port}"
        env["ECMO_WORKERS"] = str(self.workers)
        if self.threads is not None:
            env["ECMO_THREADS"] = str(self.threads)
        env.update(self.extra_env)
        return env

    def start(self, ready_path: str = "/health/ready", timeout_s: float = 120.0) -> None:
        conf = self.repo / GUNICORN_CONF.relative_to(REPO)
        cmd = [self.python, "-m", "gunicorn", "-c", str(conf), self.app]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.repo, env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: gunicorn exited {self.proc.returncode}; see {self.log_path}"
                )
            try:
                status, _, _ = request(self.port, "GET", ready_path, None, timeout_s=2.0)
                if status == 200 and len(children(self.proc.pid)) >= self.workers:
                    self.worker_pids_at_start = children(self.proc.pid)
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name}: not ready within {timeout_s:.0f} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return children(self.proc.pid)

    def memory(self) -> list[WorkerMemory]:
        out = []
        for pid in self.worker_pids():
            hwm = _status_field(pid, "VmHWM")
            rss = _status_field(pid, "VmRSS")
            if hwm is None or rss is None:
                continue
            pss = _pss_kb(pid)
            out.append(
                WorkerMemory(pid, hwm / 1024, rss / 1024, None if pss is None else pss / 1024)
            )
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._prom_dir:
            shutil.rmtree(self._prom_dir, ignore_errors=True)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    timeout_s: float = 30.0,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request to 127.0.0.1:<port>; reuses `conn` (keep-alive) when given."""
    own = conn is None
    c = conn or http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        resp = c.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        if own:
            c.close()
