"""What the gunicorn master itself answers: GET /health/live and GET /metrics (issues 18.1, 19.3, 19.8).

The master never serves requests, so it is free when every worker is busy or stuck: its own small
listener (a thread) answers liveness without a worker, and scrapes read the multiprocess directory
without one. nginx sends /health/live (and /metrics, unless ECMO_METRICS_BIND gives /metrics a port
of its own) here.

Liveness means "this pod can still serve": it fails (503) while workers keep dying abnormally --
killed by a signal (SIGBUS, SIGSEGV, the OOM killer) or by the master for missing the timeout --
ABNORMAL_EXITS or more within WINDOW_SECONDS, so the kubelet restarts a pod whose workers crash
in a loop. Workers that exit cleanly (recycled after max_requests, stopped by a reload or a
shutdown) do not count: a worker reports its clean exit through a pipe the master reads.

No flask here: http.server, as the master must stay small.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.front import Front
from service.metrics_files import directory_usage, merge_dead_worker, scrape_lock

log = logging.getLogger("ecmo.ops")

ABNORMAL_EXITS = 3
WINDOW_SECONDS = 60.0
_PID = struct.Struct("=q")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
ALLOW = "GET, HEAD, OPTIONS"
TITLES = {404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


class ExitPipe:
    """Workers write their pid here when they exit cleanly; the master reads it when it reaps them.

    Created in the master before the workers fork, so every worker inherits it. A pid is 8 bytes,
    well under PIPE_BUF, so each write is atomic; the write end never blocks a worker."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._clean: set[int] = set()

    def report_clean_exit(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            os.write(self._w, _PID.pack(pid))

    def was_clean(self, pid: int) -> bool:
        while True:
            try:
                data = os.read(self._r, _PID.size * 512)
            except BlockingIOError:
                break
            if not data:
                break
            for (reported,) in _PID.iter_unpack(data[: len(data) - len(data) % _PID.size]):
                self._clean.add(reported)
        if pid in self._clean:
            self._clean.discard(pid)
            return True
        return False


@dataclass
class WorkerWatch:
    """Worker exits seen by the master, and the liveness verdict they give."""

    window: float = WINDOW_SECONDS
    limit: int = ABNORMAL_EXITS
    exits: int = 0
    abnormal: int = 0
    _recent: collections.deque[float] = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def worker_exited(self, clean: bool, now: float | None = None) -> None:
        with self._lock:
            self.exits += 1
            if not clean:
                self.abnormal += 1
                self._recent.append(time.monotonic() if now is None else now)

    def verdict(self, now: float | None = None) -> tuple[bool, int]:
        """(live, abnormal exits within the window)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._recent and self._recent[0] < now - self.window:
                self._recent.popleft()
            recent = len(self._recent)
        return recent < self.limit, recent


class _MasterFacts:
    """Metrics only the master knows, added to every scrape it answers."""

    def __init__(self, watch: WorkerWatch, directory: Path | None) -> None:
        self.watch, self.directory = watch, directory

    def collect(self) -> Iterable[Metric]:
        exits = CounterMetricFamily(
            "ecmo_worker_exits", "gunicorn worker exits seen by the master.", labels=["kind"]
        )
        exits.add_metric(["clean"], self.watch.exits - self.watch.abnormal)
        exits.add_metric(["abnormal"], self.watch.abnormal)
        yield exits
        if self.directory is not None:
            files, used, free = directory_usage(self.directory)
            yield GaugeMetricFamily(
                "ecmo_metrics_dir_files", "Files in PROMETHEUS_MULTIPROC_DIR.", value=files
            )
            yield GaugeMetricFamily(
                "ecmo_metrics_dir_bytes", "Bytes allocated in PROMETHEUS_MULTIPROC_DIR.", value=used
            )
            if free is not None:
                yield GaugeMetricFamily(
                    "ecmo_metrics_dir_free_bytes",
                    "Free bytes on PROMETHEUS_MULTIPROC_DIR's filesystem.",
                    value=free,
                )


@dataclass
class Ops:
    """What the master keeps across reloads (on the arbiter as `server.ecmo`): its listener, the
    nginx in front, worker-exit accounting and dead-worker metrics merging."""

    watch: WorkerWatch
    exit_pipe: ExitPipe
    multiproc_dir: Path | None
    server: ThreadingHTTPServer | None = None
    front: Front | None = None
    _files_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, multiproc_dir: Path | None) -> Ops:
        return cls(WorkerWatch(), ExitPipe(), multiproc_dir)

    # --- worker exits (master, from gunicorn's child_exit) ------------------------------------

    def worker_exited(self, pid: int, aborted: bool) -> None:
        clean = self.exit_pipe.was_clean(pid) and not aborted
        self.watch.worker_exited(clean)
        if not clean:
            live, recent = self.watch.verdict()
            log.error(
                "worker died abnormally",
                extra={
                    "pid": pid,
                    "timed_out": aborted,
                    "abnormal_in_window": recent,
                    "live": live,
                },
            )
        if self.multiproc_dir is not None:
            with self._files_lock:
                merge_dead_worker(self.multiproc_dir, pid)

    # --- answers --------------------------------------------------------------------------------

    def live(self) -> tuple[int, dict[str, Any]]:
        live, recent = self.watch.verdict()
        if live:
            return 200, {"status": "live"}
        return 503, {
            "type": "about:blank",
            "title": "Not live",
            "status": 503,
            "detail": (
                f"{recent} workers died abnormally in the last {self.watch.window:.0f} s "
                "(signal, crash or timeout): this pod cannot serve reliably"
            ),
            "code": "not_live",
            "errors": [],
        }

    def metrics(self) -> bytes:
        registry = CollectorRegistry()
        registry.register(_MasterFacts(self.watch, self.multiproc_dir))
        if self.multiproc_dir is None:
            return generate_latest(registry)
        multiprocess.MultiProcessCollector(registry, path=str(self.multiproc_dir))  # type: ignore[no-untyped-call]
        with self._files_lock, scrape_lock(self.multiproc_dir):
            return generate_latest(registry)

    # --- the listener -----------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Start the listener thread; returns the address it is bound to."""
        ops = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "ecmo-risk-master"
            sys_version = ""
            timeout = 10  # a client that stalls is dropped; each client has its own thread

            def do_GET(self) -> None:
                self.started = time.perf_counter()
                incoming = self.headers.get("X-Request-ID", "")
                request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
                path = self.path.split("?", 1)[0]
                if path in ("/health/live", "/v2/health/live"):
                    status, body = ops.live()
                    if path == "/v2/health/live":  # the Open Inference Protocol's shapes
                        body = {"live": True} if status == 200 else body | {"error": body["detail"]}
                    if status != 200:
                        body["request_id"] = request_id
                    ctype = "application/json" if status == 200 else "application/problem+json"
                    self._send(status, ctype, json.dumps(body).encode(), request_id)
                elif path == "/metrics":
                    try:
                        data = ops.metrics()
                    except Exception:  # a broken metrics file must not take the listener down
                        log.exception("scrape failed")
                        self._problem(
                            500, "scrape_failed", "reading the metrics failed", request_id
                        )
                        return
                    self._send(200, CONTENT_TYPE_LATEST, data, request_id)
                else:
                    self._problem(404, "not_found", f"{path} is not served here", request_id)

            def do_HEAD(self) -> None:
                self.head_only = True
                self.do_GET()

            def do_OPTIONS(self) -> None:
                self.started = time.perf_counter()
                self.extra = {"Allow": ALLOW}
                self._send(200, "text/plain", b"", os.urandom(16).hex())

            def _not_allowed(self) -> None:
                self.started = time.perf_counter()
                self.extra = {"Allow": ALLOW}
                detail = f"{self.command} is not allowed here"
                self._problem(405, "method_not_allowed", detail, os.urandom(16).hex())

            def __getattr__(self, name: str) -> Any:
                if name.startswith("do_"):  # any other method: 405, not http.server's 501
                    return self._not_allowed
                raise AttributeError(name)

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                """http.server's own refusals (more than 100 header fields: 431, a request line
                over 64 KiB: 414, a malformed one: 400) in the problem shape, as gunicorn's
                (service/http_errors.py), not its HTML page; then the connection is closed."""
                self.started = time.perf_counter()
                self.close_connection = True
                self.extra = {"Connection": "close"}
                title = HTTPStatus(code).phrase
                detail = (message or title)[:200]
                request_id = os.urandom(16).hex()
                body = {
                    "type": "about:blank",
                    "title": title,
                    "status": code,
                    "detail": detail,
                    "code": f"http_{code}",
                    "errors": [{"path": "", "message": detail, "rule": "http"}],
                    "request_id": request_id,
                }
                data = json.dumps(body).encode()
                self._send(code, "application/problem+json", data, request_id)

            def _problem(self, status: int, code: str, detail: str, request_id: str) -> None:
                body: dict[str, Any] = {
                    "type": "about:blank",
                    "title": TITLES[status],
                    "status": status,
                    "detail": detail,
                    "code": code,
                    "errors": [],
                    "request_id": request_id,
                }
                self._send(
                    status, "application/problem+json", json.dumps(body).encode(), request_id
                )

            def _send(self, status: int, ctype: str, data: bytes, request_id: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("X-Request-ID", request_id)
                elapsed = (time.perf_counter() - self.started) * 1000
                self.send_header("Server-Timing", f"app;dur={elapsed:.3f}")  # as every answer
                for key, value in getattr(self, "extra", {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if not getattr(self, "head_only", False):
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes and scrapes every few seconds: not worth a log line each

        server = ThreadingHTTPServer((host.strip("[]"), port), Handler)
        server.daemon_threads = True
        self.server = server
        threading.Thread(target=server.serve_forever, name="ecmo-ops", daemon=True).start()
        bound = server.server_address
        return str(bound[0]), int(bound[1])

    def supervise(self, failed: Callable[[], bool], on_failure: Callable[[], None]) -> None:
        """A thread that calls on_failure() once, as soon as failed() is true (checked twice a
        second): the master stops when the nginx in front of it is gone."""

        def loop() -> None:
            while not failed():
                time.sleep(0.5)
            on_failure()

        threading.Thread(target=loop, name="ecmo-supervise", daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
