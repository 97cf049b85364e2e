"""gunicorn settings and hooks. Used as: gunicorn -c service/gunicorn_conf.py 'service.app:create_app()'

Values come from the same load_settings() as the app (ECMO_* variables), so there is one
configuration surface. Models load once in the master (preload) and are shared by fork.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# gunicorn executes this file by path, so the repository root may not be on sys.path yet.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gunicorn.glogging import Logger

from service.config import load_settings
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

_settings = load_settings()

bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread" if _settings.threads > 1 else "sync"
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
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

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    # prometheus_client reads this at import, and the app is imported after this file runs, so
    # setting it here still counts as "before import". An explicit value from the shell wins.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ecmo-prom-")


def on_starting(server: Any) -> None:
    """Wipe the multiprocess directory: files left by an earlier run would be counted again."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if directory.exists():
        for child in directory.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    directory.mkdir(parents=True, exist_ok=True)


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


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
