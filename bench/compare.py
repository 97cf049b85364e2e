"""Batch server time of this checkout against another one, the two servers alternating.

    python -m bench.compare /path/to/other/checkout [--rounds 4] [--batches 40] [--proxy off]

`python -m bench` measures one checkout; its batch figure moves by a millisecond or more between
runs of the same code (the batches follow the wrk load on a shared machine). To see what a change
costs, this starts both checkouts side by side (each with its own `.venv` and its own
service/gunicorn_conf.py, 2 workers, gunicorn alone unless --proxy nginx) and times 1,000-patient
batches (server-side, from Server-Timing) on each in turn, swapping the order every round, so a
burst of load from elsewhere hits both. It prints the median of every round and of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import bodies
from bench.__main__ import measure_batch
from bench.servers import REPO, Server

MODELS = ("weaning", "ich")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("other", type=Path, help="another checkout of this repository, set up")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--batches", type=int, default=40, help="timed batches per model and round")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--proxy", choices=("off", "nginx"), default="off")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 1 <= args.batches <= 1000:
        p.error("--rounds must be 1..20 and --batches 1..1000")
    other = args.other.resolve()
    python = other / ".venv" / "bin" / "python"
    if not python.exists() or not (other / "service" / "gunicorn_conf.py").exists():
        p.error(f"{other} is not a set-up checkout (run its scripts/setup)")
    logs = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    env = {"ECMO_PROXY": args.proxy}
    servers = {
        "this": Server("this", "service.app:create_app()", 2, None, logs / "this.log"),
        "other": Server(
            "other",
            "service.app:create_app()",
            2,
            None,
            logs / "other.log",
            repo=other,
            python=str(python),
        ),
    }
    for server in servers.values():
        server.extra_env.update(env)
    batch = {m: bodies.encode(bodies.batch(m, args.batch_size)) for m in MODELS}
    medians: dict[str, dict[str, list[float]]] = {k: {m: [] for m in MODELS} for k in servers}
    try:
        for server in servers.values():
            server.start()
        for round_ in range(args.rounds):
            order = ["this", "other"] if round_ % 2 == 0 else ["other", "this"]
            for name in order:
                for model in MODELS:
                    result = measure_batch(servers[name], model, batch[model], args.batches)
                    if result["errors"] or result["server_p50_ms"] is None:
                        print(f"{name} {model}: {result['statuses']}", file=sys.stderr)
                        return 1
                    medians[name][model].append(result["server_p50_ms"])
    finally:
        for server in servers.values():
            server.stop()
    print(f"batch of {args.batch_size}, server p50 per round (ms); proxy {args.proxy}")
    for name, path in (("this", REPO), ("other", other)):
        cells = []
        for model in MODELS:
            rounds = ", ".join(f"{v:.2f}" for v in medians[name][model])
            cells.append(f"{model} {statistics.median(medians[name][model]):.2f} ({rounds})")
        print(f"  {name:5s} {path}: " + "; ".join(cells))
    for model in MODELS:
        ratio = statistics.median(medians["this"][model]) / statistics.median(
            medians["other"][model]
        )
        print(f"  {model}: this / other = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
