"""Real server processes for tests (gunicorn on 127.0.0.1), always stopped.

A server starts in its own process group with PR_SET_PDEATHSIG, so it dies with the test process
even if that is killed; `running()` stops it in a finally. `gunicorn()` runs the repository's
gunicorn config exactly as scripts/serve and the Dockerfile do.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUNICORN_ARGS = ["-c", "service/gunicorn_conf.py", "service.app:create_app()"]
ENTRY_POINTS: dict[str, dict[str, str]] = {
    "gunicorn": {"ECMO_PROXY": "off"},
    "nginx": {"ECMO_PROXY": "nginx"},
}
"""The two ways the service listens on ECMO_BIND, as the environment gunicorn() is given:
gunicorn alone, and the deployment's entry point (scripts/serve, the Dockerfile CMD, the chart),
where the gunicorn master runs nginx in front of its workers (service/front.py). A module-scoped
fixture parametrised over these runs its tests through both."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if predicate():
                return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    abandoned_requests: int = 0
    """Requests a test abandons on purpose; running() forgives that many undeliverable 500s."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def workers(self) -> set[int]:
        """PIDs whose parent is the gunicorn master, other than the nginx it runs in front."""
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = stat.read_text()
                comm = text.split("(", 1)[1].rsplit(")", 1)[0]
                fields = text.rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid and fields[0] != "Z" and comm != "nginx":
                    children.add(int(stat.parent.name))
        return children

    def nginx(self) -> int | None:
        """PID of the nginx master the gunicorn master runs (ECMO_PROXY=nginx), if any."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = stat.read_text()
                fields = text.rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid and text.split("(", 1)[1].startswith("nginx)"):
                    return int(stat.parent.name)
        return None

    def wait_workers(
        self, count: int, timeout: float, exclude: frozenset[int] | set[int] = frozenset()
    ) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.workers()
            if len(current) == count and not current & exclude:
                return current
            time.sleep(0.05)
        raise AssertionError(f"workers {self.workers()} (want {count} not in {exclude})")


def start_server(
    argv: list[str], env: Mapping[str, str], cwd: Path, port: int, log: Path
) -> Server:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # dies with the test process, even a killed one
        )
    return Server(proc, port, log)


def stop_server(server: Server) -> None:
    """Quick shutdown (SIGINT: the master kills and reaps its workers), then SIGKILL the whole
    process group (ours: start_new_session) if it lingers. Only while the master is unreaped,
    so its PID, which is the group id, cannot have been reused."""
    if server.proc.poll() is not None:
        return  # a master that exited leaves no workers: they exit when their parent changes
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGINT)
    try:
        server.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)


def ready_status(port: int, path: str = "/health/ready", timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited {server.proc.returncode}:\n{server.logs()}")
        try:
            status = ready_status(server.port)
            if status == 200:
                return
            last = str(status)
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"not ready after {timeout}s ({last}):\n{server.logs()}")


@contextlib.contextmanager
def running(
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    port: int,
    log: Path,
    ready_timeout: float = 30.0,
) -> Iterator[Server]:
    server = start_server(argv, env, cwd, port, log)
    try:
        wait_ready(server, ready_timeout)
        yield server
    finally:
        stop_server(server)
    # The in-process no-5xx check does not see real servers: read their access log instead.
    errors = server_errors(server.logs())
    # A test that loses requests on purpose declares how many: gunicorn logs a 500 for an answer
    # it could not deliver, nginx a 502 for a request whose worker was killed.
    undeliverable = [e for e in errors if '"route":"<http>"' in e][: server.abandoned_requests]
    errors = [e for e in errors if e not in undeliverable]
    assert not errors, "the server answered with a server error:\n" + "\n".join(errors)


def server_errors(logs: str) -> list[str]:
    """Access-log lines of 5xx answers, other than 503 (not ready: readiness says why). The HTTP
    layer's own answers (gunicorn's or nginx's) are among them, with route "<http>"; nginx's
    reach the log through service/front.py's relay_log."""
    found = []
    for line in logs.splitlines():
        if '"ecmo.access"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        status = entry.get("status")
        if isinstance(status, int) and status >= 500 and status != 503:
            found.append(line)
    return found


@contextlib.contextmanager
def gunicorn(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    workers: int = 2,
    ready_timeout: float = 60.0,
) -> Iterator[Server]:
    """The repository's gunicorn config on a free 127.0.0.1 port, with its own metrics dir."""
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
    argv = [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS]
    with running(argv, full_env, REPO, port, tmp_path / f"gunicorn-{port}.log", ready_timeout) as s:
        yield s


def unshare_works() -> bool:
    """Whether this machine lets an unprivileged process make a private mount namespace (tests
    that hide nginx or mount a tiny tmpfs run in one; nothing leaks out of it)."""
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--map-root-user", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0
