"""Where a 1,000-patient batch spends its time, part by part, in-process.

    python -m bench.parts [--batch-size 1000] [--repeat 40]

Times each step the batch route takes, called directly (no Flask, no gunicorn, the collector set
up as in a worker): parsing the body (orjson), `fast_load` (the request contract), the column
scoring (core.scoring), the answer bodies (`column_bodies`) and encoding the answer. Each figure
is the lower quartile of --repeat calls, in ms. Use it beside `python -m bench.compare`: that one
says whether a batch got slower, this one says in which part.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bench import bodies
from service.api.v1.fastload import fast_load
from service.api.v1.predict import column_bodies
from service.config import load_settings
from service.core.registry import LoadedModel, Registry
from service.core.scoring import Scoring


def lower_quartile_ms(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.quantiles(times, n=4)[0] if len(times) > 1 else times[0]


def time_parts(model: LoadedModel, scoring: Scoring, size: int, repeat: int) -> list[float]:
    """ms for parse, fast_load, score, bodies and encode of the benchmark batch for this model."""
    raw = bodies.encode(bodies.batch(model.name, size))
    payload = orjson.loads(raw)
    data = fast_load(model.kind, payload, True)
    if data is None:
        raise SystemExit(f"{model.name}: the benchmark batch did not take the fast path")
    patients = [p["inputs"] for p in data["patients"]]
    batch = scoring.patients(model, patients)
    if batch.columns is None or batch.predictions or batch.errors:
        raise SystemExit(f"{model.name}: the benchmark batch did not take the column path whole")
    columns = batch.columns
    answer = {"predictions": column_bodies(model, columns)}
    return [
        lower_quartile_ms(lambda: orjson.loads(raw), repeat),
        lower_quartile_ms(lambda: fast_load(model.kind, payload, True), repeat),
        lower_quartile_ms(lambda: scoring.patients(model, patients), repeat),
        lower_quartile_ms(lambda: column_bodies(model, columns), repeat),
        lower_quartile_ms(lambda: orjson.dumps(answer), repeat),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.parts", description=__doc__)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=40)
    args = p.parse_args(argv)
    if not 1 <= args.batch_size <= 100_000 or not 1 <= args.repeat <= 1000:
        p.error("--batch-size must be 1..100000 and --repeat 1..1000")
    settings = load_settings()
    registry = Registry.load(settings.model_dir, settings.default_versions)
    scoring = Scoring()
    # As a gunicorn worker runs (service/gunicorn_conf.py pre_fork/post_fork): the loaded objects
    # out of the collector's reach, and the workers' young-generation threshold.
    from service import gunicorn_conf

    gunicorn_conf.pre_fork(None, None)
    gunicorn_conf.post_fork(None, None)
    gc.collect()
    print(f"batch of {args.batch_size}, ms per call (lower quartile of {args.repeat})")
    print(
        f"{'model':8s} {'parse':>7s} {'fast_load':>10s} {'score':>7s} {'bodies':>7s} {'encode':>7s}"
    )
    for name in ("weaning", "ich"):
        row = time_parts(registry.get(name), scoring, args.batch_size, args.repeat)
        print(f"{name:8s} {row[0]:7.2f} {row[1]:10.2f} {row[2]:7.2f} {row[3]:7.2f} {row[4]:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
