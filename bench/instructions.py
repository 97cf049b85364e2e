"""python -m bench.instructions: instructions per request inside the WSGI app, counted by valgrind.

CPU time on a shared machine moves by 10-20 % from one minute to the next; the number of
instructions a request executes does not. This counts them for the service and for the floor
app (bench.micro's loop: no gunicorn, no sockets), so a change can be judged before the
load benchmark is run. Each count is the difference of two runs (--requests and 4x as many)
divided by the extra requests, which cancels start-up and model loading. Needs valgrind
(Debian: `apt-get install valgrind`); on 2 cores about 3 minutes for both models, twice
that with --batch.

The ratio floor/service here is not the req/s ratio of `python -m bench`: under load gunicorn,
the kernel and wrk add the same cost to both apps, so the load ratio is higher than this one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def collected(valgrind_output: str) -> int:
    """The instruction count callgrind prints at exit ("Collected : N")."""
    match = _COLLECTED.search(valgrind_output)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{valgrind_output[-2000:]}")
    return int(match.group(1))


def per_request(small: int, large: int, n_small: int, n_large: int) -> float:
    """Instructions per request from two runs that differ only in their number of requests."""
    if n_large <= n_small:
        raise ValueError("the second run must make more requests")
    return (large - small) / (n_large - n_small)


def count(valgrind: str, app: str, model: str, batch: bool, n: int) -> int:
    cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, "-m", "bench.instructions", "--child", app, model, str(n)]
    if batch:
        cmd.append("--batch")
    # One BLAS thread: OpenBLAS's idle threads spin, and valgrind counts their instructions.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return collected(done.stderr)


def child(app_name: str, model: str, n: int, batch: bool) -> None:
    """Run n requests through the app in this process (under valgrind)."""
    from bench.micro import loop, request_for, worker_like_apps

    service, floor = worker_like_apps()
    app = service if app_name == "service" else floor
    path, body = request_for(model, batch)
    if app_name == "floor":
        path = f"/v1/models/{model}/predict"
    loop(app.wsgi_app, path, body, 2)  # warm-up: first-call caches
    _, status = loop(app.wsgi_app, path, body, n)
    if status != 200:
        raise SystemExit(f"{app_name} answered {status}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    p.add_argument("--models", default="weaning,ich")
    p.add_argument("--requests", type=int, default=100, help="single requests in the short run")
    p.add_argument("--batch", action="store_true", help="also count a 1,000-patient batch")
    p.add_argument("--child", nargs=3, metavar=("APP", "MODEL", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        app_name, model, n = args.child
        child(app_name, model, int(n), args.batch)
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("bench.instructions: valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not 10 <= args.requests <= 10_000:
        p.error("--requests must be 10..10000")
    n_small, n_large = args.requests, 4 * args.requests
    models = [m for m in args.models.split(",") if m]
    runs: list[tuple[str, str, bool, int]] = []
    for model in models:
        runs += [(app, model, False, n) for app in ("service", "floor") for n in (n_small, n_large)]
        if args.batch:
            runs += [("service", model, True, n) for n in (2, 8)]
    # Counts are deterministic, so the runs may share the machine: one per core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        done = dict(zip(runs, pool.map(lambda r: count(valgrind, *r), runs), strict=True))
    print(f"{'case':24s} {'service':>12s} {'floor':>12s} {'floor/service':>14s}")
    for model in models:
        single = {
            app: per_request(
                done[(app, model, False, n_small)],
                done[(app, model, False, n_large)],
                n_small,
                n_large,
            )
            for app in ("service", "floor")
        }
        ratio = single["floor"] / single["service"]
        print(
            f"{model + ' single':24s} {single['service']:12,.0f} {single['floor']:12,.0f} {ratio:14.3f}"
        )
        if args.batch:
            batch = per_request(
                done[("service", model, True, 2)], done[("service", model, True, 8)], 2, 8
            )
            print(f"{model + ' batch of 1000':24s} {batch:12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
