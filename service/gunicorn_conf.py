"""gunicorn settings and hooks. Used as: gunicorn -c service/gunicorn_conf.py 'service.app:create_app()'

Values come from the same load_settings() as the app (ECMO_* variables), so there is one
configuration surface. Models load once in the master (preload) and are shared by fork.

The process model (docs/ARCHITECTURE.md "Process model"): the gunicorn master is the container's
PID 1. With ECMO_PROXY=nginx (the default) it runs nginx as its child on ECMO_BIND (service/front.py)
and its workers listen on a Unix socket only nginx uses, so a worker only ever reads a complete
request. The master's own listener (service/ops.py) answers /health/live and /metrics. gunicorn
re-executes this file on SIGHUP, so everything that must outlive a reload lives in the environment
(directories) or on the arbiter object (`server.ecmo`, an Ops), never in this module's globals.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

# gunicorn executes this file by path, so the repository root may not be on sys.path yet.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus_client reads this at import (service.ops and the app import it below), so it
    # is set before those imports. An explicit value from the shell wins. Unset, the directory
    # is this instance's own (ecmo-prom-*, removed at exit): two instances on one host never
    # share or wipe each other's metrics.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ecmo-prom-")

from service.config import load_settings
from service.front import Front, local_address, nginx_binary
from service.ops import Ops

if "ECMO_RUN_DIR" not in os.environ:
    # nginx's config, temp files and pid, and gunicorn's socket; kept across SIGHUP re-reads.
    os.environ["ECMO_RUN_DIR"] = tempfile.mkdtemp(prefix="ecmo-run-")

from gunicorn.glogging import Logger

from service.logs import JsonFormatter


class JsonLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, writing its own lines ("Listening at", "Booting worker", worker
    timeouts with their tracebacks) as the same JSON objects as the service's, on the same stream.

    A logger_class rather than logconfig_dict: gunicorn turns its access log on whenever a
    logconfig_dict is given, and ours (the ecmo.access logger) already writes one line a request.
    setup() runs again on SIGHUP, so the formatter survives a reload.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


logger_class = JsonLogger

REPLAY_SUBDIR = "cds-jti"
"""CDS JWT replay records (service/config.py's default ECMO_CDS_REPLAY_DIR): not metrics."""

_settings = load_settings()
_run_dir = Path(os.environ["ECMO_RUN_DIR"])
_app_socket = _run_dir / "gunicorn.sock"

if _settings.proxy == "nginx":
    nginx_binary()  # fail fast, with the fix in the message, if nginx is missing
    bind = f"unix:{_app_socket}"
    # nginx has already bounded the request line and each header's size (414 and 431 in the
    # problem shape, service/front.py): gunicorn's smaller limits would refuse what nginx let
    # through. nginx does not count header fields, so gunicorn's count (its default, 100) still
    # applies, answered 431 in the same shape as without nginx (service/http_errors.py).
    limit_request_line = 0
    limit_request_field_size = 0
else:
    bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread" if _settings.threads > 1 else "sync"
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Recycling (off unless ECMO_MAX_REQUESTS is set; the chart sets it): a leak in a worker is bounded,
# and the jitter keeps the workers from restarting together. Each dead worker's metrics files are
# merged into one by child_exit, so recycling does not grow the metrics directory.
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
preload_app = True
# gunicorn >= 25.1 opens a control socket at $HOME/.gunicorn/gunicorn.ctl by default: one path
# shared by every gunicorn of the same user on a host (parallel test servers, bench), unwritable in
# the image (HOME=/nonexistent, read-only root). Signals are our control interface (SIGTERM drain,
# SIGHUP model reload), so turn it off; older gunicorn ignores the unknown setting.
control_socket_disable = True
# Gunicorn's own access log would duplicate ours (service.logging writes one JSON line a request).
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# The heartbeat file must live on a tmpfs (a read-only root filesystem in Kubernetes has none else).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


log = logging.getLogger("ecmo.gunicorn")


def on_starting(server: Any) -> None:
    """Wipe the multiprocess directory: files left by an earlier run would be counted again."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if directory.exists():
        for child in directory.iterdir():
            if child.name == REPLAY_SUBDIR:
                continue  # tokens seen before a restart stay refused until they expire
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    _run_dir.mkdir(parents=True, exist_ok=True)
    # Before any worker forks: they inherit the clean-exit pipe.
    server.ecmo = Ops.create(directory)


def when_ready(server: Any) -> None:
    """gunicorn listens: start the master's listener, then nginx in front of the workers."""
    ops: Ops = server.ecmo
    if _settings.metrics_bind is not None:
        host, _, port = _settings.metrics_bind.rpartition(":")
        ops_host, ops_port = ops.serve(host, int(port))
        ops_address = local_address(_settings.metrics_bind)
    elif _settings.proxy == "nginx":
        ops_host, ops_port = ops.serve("127.0.0.1", 0)
        ops_address = f"{ops_host}:{ops_port}"
    else:
        return
    log.info("master listener started", extra={"address": f"{ops_host}:{ops_port}"})
    if _settings.proxy != "nginx":
        return
    front = ops.front = Front.start(_settings, _run_dir, _app_socket, ops_address)
    master = os.getpid()

    def nginx_gone() -> None:
        log.error("nginx exited: stopping the service so that it is restarted")
        os.kill(master, signal.SIGTERM)

    ops.supervise(lambda: front.exited() and not front.stopping, nginx_gone)
    # Tell nginx at the moment the master is told: TERM drains (nginx stops accepting and finishes
    # what it holds, like the workers), INT/QUIT stop at once.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(sig)

        def relay(signum: int, frame: Any, previous: Any = previous) -> None:
            front.signal(graceful=signum == signal.SIGTERM)
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, relay)


def on_exit(server: Any) -> None:
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if metrics_dir.name.startswith("ecmo-prom-"):  # ours (not a directory given by the caller)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    ops: Ops | None = getattr(server, "ecmo", None)
    if ops is None:
        return
    if ops.front is not None:
        ops.front.stop(timeout=_settings.graceful_timeout)
    ops.close()
    if _run_dir.name.startswith("ecmo-run-"):  # ours (not a directory given as ECMO_RUN_DIR)
        shutil.rmtree(_run_dir, ignore_errors=True)


def on_reload(server: Any) -> None:
    """SIGHUP: rebuild the app in the master (re-reading the model directory) before new workers fork.

    With preload_app gunicorn would otherwise keep serving the app it built at start. A model
    version that fails only marks itself not ready (the registry); should building the app fail
    for any other reason, the master keeps the app it has and says so: an exception here would
    end the master, and every pod reloading a shared volume would go down at once.
    """
    try:
        server.app.callable = server.app.load()
    except BaseException as exc:  # SystemExit too: gunicorn's loader raises it
        if isinstance(exc, KeyboardInterrupt):
            raise
        server.log.exception("reload failed; still serving the app built before the SIGHUP")


def pre_fork(server: Any, worker: Any) -> None:
    """Move everything the master built (app, models, libraries) out of the collector's reach.

    Workers then never scan those long-lived objects in a full collection, and collections do not
    write to their pages, so they stay shared with the master (Python docs, gc.freeze)."""
    gc.freeze()


# Young-generation threshold for the workers. A 1,000-patient batch allocates ~15,000 containers
# that all live until the answer is sent: at the default 700 they ran ~20 young and several full
# collections per batch (~0.8 ms of ~9). Our objects are freed by reference counting, not the
# cycle collector, so collecting less often costs little memory (python -m bench reports RSS).
GC_GEN0_THRESHOLD = 20_000


def post_fork(server: Any, worker: Any) -> None:
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def post_worker_init(worker: Any) -> None:
    """gunicorn's own error answers (414, 431, 400 on a broken request line, ...) in the
    service's problem+json shape instead of HTML (service/http_errors.py)."""
    from service.http_errors import install

    install()


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, as it exits through Python (not when a signal kills it)."""
    ops: Ops | None = getattr(server, "ecmo", None)
    if ops is not None:
        ops.exit_pipe.report_clean_exit(worker.pid)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, for every reaped worker: live gauges dropped, counters merged, exit judged."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    ops: Ops | None = getattr(server, "ecmo", None)
    if ops is not None:
        ops.worker_exited(worker.pid, aborted=bool(getattr(worker, "aborted", False)))
