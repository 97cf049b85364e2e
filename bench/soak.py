"""python -m bench.soak: a bounded soak of the deployment's entry point with worker recycling (issue 19).

Starts the same command as scripts/serve and the Dockerfile CMD (nginx in front of gunicorn) on a
free 127.0.0.1 port with the shipped models, workers recycled every --max-requests (+ jitter), and
sends single predictions and small batches (both models) from --clients keep-alive connections
for --minutes. Every 10 s it samples the resident memory of the master, the workers and nginx, and
the metrics directory. At the end it checks, and prints:

- counters exact: /metrics (read from the master) against what the clients got answered
  (patients scored per model, single and batch requests per route), and no request failed;
- RSS growth below 5 %: the master's and nginx's last sample against their first after the
  warm-up; the workers' (which recycling replaces) mean of the last minute against the first;
- the metrics directory bounded: at most 3 files per live worker plus one merged file per type.

Exit status 1 if a check fails. Writes bench-results/soak.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.servers import HOST, REPO, Server, _status_field, children

WEANING = {
    "apache_ii": 18,
    "lactate_24h": {"value": 2.1, "unit": "mmol/L"},
    "vis_0h": 20.0,
    "vis_24h": 8.0,
}
ICH = {
    "gwr": 1.2,
    "stroke_history": False,
    "ffp_volume": {"value": 400, "unit": "mL"},
    "min_platelets": {"value": 80, "unit": "10*9/L"},
}
INPUTS = {"weaning": WEANING, "ich": ICH}
SINGLE = "/v1/models/<name>/predict"
BATCH = "/v1/models/<name>/predict/batch"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok: Counter[tuple[str, str]] = Counter()  # (route, model) -> answered 200
        self.patients: Counter[str] = Counter()
        self.failures: list[str] = []
        self.latencies: list[float] = []


def _client(port: int, seed: int, batch_size: int, deadline: float, tally: Tally) -> None:
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    while time.monotonic() < deadline:
        model = rnd.choice(("weaning", "ich"))
        batch = rnd.random() < 0.05
        body: dict[str, Any]
        if batch:
            path, route, n = f"/v1/models/{model}/predict/batch", BATCH, batch_size
            body = {"patients": [{"inputs": INPUTS[model]}] * n}
        else:
            path, route, n = f"/v1/models/{model}/predict", SINGLE, 1
            body = {"inputs": INPUTS[model]}
        data = json.dumps(body).encode()
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            error = None if response.status == 200 else f"{response.status} {payload[:200]!r}"
        except (OSError, http.client.HTTPException) as exc:
            error = repr(exc)
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
        elapsed = (time.perf_counter() - started) * 1000
        with tally.lock:
            if error is None:
                tally.ok[(route, model)] += 1
                tally.patients[model] += n
                if not batch:
                    tally.latencies.append(elapsed)
            else:
                tally.failures.append(f"{path}: {error}")
    conn.close()


def _rss_mb(pid: int) -> float | None:
    kb = _status_field(pid, "VmRSS")
    return None if kb is None else kb / 1024


def _nginx(master: int) -> int | None:
    for pid in sorted(Path("/proc").glob("[0-9]*")):
        try:
            stat = (pid / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master and "(nginx)" in stat:
            return int(pid.name)
    return None


def _sample(server: Server, directory: Path, started: float) -> dict[str, Any]:
    assert server.proc is not None
    master = server.proc.pid
    workers = children(master)
    nginx = _nginx(master)
    files = list(directory.glob("*.db"))
    return {
        "t": round(time.monotonic() - started, 1),
        "master_mb": _rss_mb(master),
        "nginx_mb": None if nginx is None else _rss_mb(nginx),
        "workers": {str(w): _rss_mb(w) for w in workers},
        "metrics_files": len(files),
        "metrics_bytes": sum(f.stat().st_blocks * 512 for f in files if f.exists()),
    }


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def _total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the load (10)")
    p.add_argument("--clients", type=int, default=4, help="keep-alive client connections (4)")
    p.add_argument("--workers", type=int, default=2, help="ECMO_WORKERS (2)")
    p.add_argument("--max-requests", type=int, default=2000, help="ECMO_MAX_REQUESTS (2000)")
    p.add_argument("--jitter", type=int, default=200, help="ECMO_MAX_REQUESTS_JITTER (200)")
    p.add_argument("--batch-size", type=int, default=50, help="patients per batch (50)")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds before the RSS baseline")
    p.add_argument("--out", type=Path, default=REPO / "bench-results", help="results directory")
    args = p.parse_args(argv)
    if not 0.1 <= args.minutes <= 60 or not 1 <= args.clients <= 64:
        p.error("--minutes must be 0.1..60 and --clients 1..64")
    args.out.mkdir(parents=True, exist_ok=True)
    server = Server(
        "soak",
        "service.app:create_app()",
        args.workers,
        None,
        args.out / "soak-server.log",
        extra_env={
            "ECMO_MAX_REQUESTS": str(args.max_requests),
            "ECMO_MAX_REQUESTS_JITTER": str(args.jitter),
        },
    )
    server.start()
    try:
        assert server._prom_dir is not None
        directory = Path(server._prom_dir)
        tally = Tally()
        started = time.monotonic()
        deadline = started + args.minutes * 60
        threads = [
            threading.Thread(
                target=_client, args=(server.port, i, args.batch_size, deadline, tally), daemon=True
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        samples = []
        while time.monotonic() < deadline:
            samples.append(_sample(server, directory, started))
            time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        for t in threads:
            t.join(60)
        time.sleep(1.0)
        samples.append(_sample(server, directory, started))
        metrics = _scrape(server.port)
    finally:
        server.stop()

    checks: dict[str, bool] = {}
    counted = {
        "patients_weaning": (
            _total(metrics, "ecmo_predictions_total", model="weaning"),
            tally.patients["weaning"],
        ),
        "patients_ich": (
            _total(metrics, "ecmo_predictions_total", model="ich"),
            tally.patients["ich"],
        ),
        "single_requests": (
            _total(metrics, "ecmo_http_requests_total", route=SINGLE, status="200"),
            sum(v for (r, _), v in tally.ok.items() if r == SINGLE),
        ),
        "batch_requests": (
            _total(metrics, "ecmo_http_requests_total", route=BATCH, status="200"),
            sum(v for (r, _), v in tally.ok.items() if r == BATCH),
        ),
    }
    for key, (seen, sent) in counted.items():
        checks[f"counter exact: {key}"] = seen == sent
    checks["no failed request"] = not tally.failures
    recycled = _total(metrics, "ecmo_worker_exits_total", kind="clean")
    abnormal = _total(metrics, "ecmo_worker_exits_total", kind="abnormal")
    checks["workers recycled, none died"] = recycled >= 1 and abnormal == 0

    steady = [s for s in samples if s["t"] >= args.warmup] or samples
    growth: dict[str, float | None] = {}
    for key in ("master_mb", "nginx_mb"):
        first, last = steady[0][key], steady[-1][key]
        growth[key] = None if not first or last is None else (last / first - 1) * 100
    window = max(1, len(steady) // max(1, int(args.minutes)))  # about a minute of samples

    def mean_workers(block: list[dict[str, Any]]) -> float:
        values = [v for s in block for v in s["workers"].values() if v]
        return statistics.fmean(values) if values else float("nan")

    w_first, w_last = mean_workers(steady[:window]), mean_workers(steady[-window:])
    growth["workers_mb"] = (w_last / w_first - 1) * 100
    for key, value in growth.items():
        checks[f"RSS growth < 5 %: {key}"] = value is None or value < 5.0
    max_files = max(s["metrics_files"] for s in samples)
    checks["metrics directory bounded"] = max_files <= 3 * args.workers + 3

    result = {
        "settings": vars(args) | {"out": str(args.out)},
        "requests_ok": sum(tally.ok.values()),
        "patients": dict(tally.patients),
        "failures": tally.failures[:20],
        "failure_count": len(tally.failures),
        "single_p50_ms": round(statistics.median(tally.latencies), 2) if tally.latencies else None,
        "single_p99_ms": round(pct(tally.latencies, 99), 2) if tally.latencies else None,
        "counters": {k: {"metrics": m, "clients": c} for k, (m, c) in counted.items()},
        "worker_exits": {"clean": recycled, "abnormal": abnormal},
        "rss_growth_percent": growth,
        "workers_rss_mb_first_last_minute": [round(w_first, 1), round(w_last, 1)],
        "metrics_dir_max_files": max_files,
        "metrics_dir_max_bytes": max(s["metrics_bytes"] for s in samples),
        "samples": samples,
        "checks": checks,
    }
    (args.out / "soak.json").write_text(json.dumps(result, indent=2))
    print(
        f"soak {args.minutes:g} min, {args.clients} clients, {args.workers} workers recycled every "
        f"{args.max_requests}+{args.jitter} requests: {result['requests_ok']} requests answered "
        f"({dict(tally.patients)} patients), {len(tally.failures)} failed, single p50 "
        f"{result['single_p50_ms']} ms p99 {result['single_p99_ms']} ms; worker exits clean "
        f"{recycled:g} abnormal {abnormal:g}"
    )
    print(
        "RSS growth %: "
        + ", ".join(f"{k} {'n/a' if v is None else f'{v:+.2f}'}" for k, v in growth.items())
        + f" (workers {w_first:.1f} -> {w_last:.1f} MB); metrics dir at most {max_files} files, "
        f"{result['metrics_dir_max_bytes'] / 1024:.0f} KiB"
    )
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
