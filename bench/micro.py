"""python -m bench.micro: CPU cost of one request inside the WSGI app, without gunicorn or sockets.

Calls the app's WSGI callable in a loop with a prepared environ and reports microseconds of CPU
per request for the service and for the floor app, so the app's own cost can be compared without
the noise of a shared machine. ``--profile`` adds a pyinstrument profile of the service loop
(`pip install pyinstrument`). The service's JSON request log is silenced here (sent to a null
stream) only after it has been formatted, so logging still costs what it costs. The garbage
collector is set up as in a gunicorn worker (service/gunicorn_conf.py's pre_fork and post_fork):
with Python's defaults a 1,000-patient batch costs twice what it costs under gunicorn.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bench import bodies

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ_for(path: str, body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def loop(app: Wsgi, path: str, body: bytes, n: int) -> tuple[float, int]:
    """CPU seconds for n requests, and the last status."""
    base = environ_for(path, body)
    status = [""]

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status[0] = s

    t0 = time.process_time()
    for _ in range(n):
        env = dict(base)
        env["wsgi.input"] = io.BytesIO(body)
        out = app(env, start_response)
        for _chunk in out:
            pass
        close = getattr(out, "close", None)
        if close is not None:
            close()
    return time.process_time() - t0, int(status[0].split()[0])


def worker_like_apps() -> tuple[Any, Any]:
    """The service (its JSON log sent to a null stream once formatted) and the floor app, with the
    process set up as a gunicorn worker of service/gunicorn_conf.py is."""
    # The service under gunicorn runs in multiprocess metrics mode; do the same here.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-micro-"))
    from bench.floor_app import create_app as create_floor
    from service import gunicorn_conf
    from service.app import create_app

    service = create_app()
    for h in logging.getLogger("ecmo").handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(open(os.devnull, "w"))  # lives as long as the process
    floor = create_floor()
    # What a gunicorn worker runs with: the master's objects frozen out of the collector's reach
    # and the workers' young-generation threshold (the config's own hooks, called as gunicorn does).
    gunicorn_conf.pre_fork(None, None)
    gunicorn_conf.post_fork(None, None)
    return service, floor


def request_for(model: str, batch: bool) -> tuple[str, bytes]:
    """The service's path and body for one benchmark request (the floor answers on /predict)."""
    if batch:
        return f"/v1/models/{model}/predict/batch", bodies.encode(bodies.batch(model, 1000))
    return f"/v1/models/{model}/predict", bodies.encode(bodies.SINGLE[model])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    p.add_argument("--model", default="weaning")
    p.add_argument("-n", type=int, default=3000, help="requests per measurement")
    p.add_argument("--batch", action="store_true", help="1,000-patient batch requests")
    p.add_argument("--profile", action="store_true", help="pyinstrument profile of the service")
    args = p.parse_args(argv)
    service, floor = worker_like_apps()
    path, body = request_for(args.model, args.batch)
    n = max(1, args.n // 300) if args.batch else args.n
    floor_path = f"/v1/models/{args.model}/predict"
    loop(service.wsgi_app, path, body, max(1, n // 10))  # warm-up
    loop(floor.wsgi_app, floor_path, body, max(1, n // 10))
    results: dict[str, list[float]] = {}
    for _ in range(3):
        for name, app, pth in (
            ("service", service.wsgi_app, path),
            ("floor", floor.wsgi_app, floor_path),
        ):
            cpu, status = loop(app, pth, body, n)
            if status != 200:
                raise SystemExit(f"{name} answered {status}")
            results.setdefault(name, []).append(cpu / n * 1e6)
    for name, us in results.items():
        print(
            f"{name:8s} {min(us):9.1f} us CPU per request (best of 3; {', '.join(f'{u:.0f}' for u in us)})"
        )
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        loop(service.wsgi_app, path, body, n)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
