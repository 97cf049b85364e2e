"""python -m bench: the service against the floor app, both under service/gunicorn_conf.py.

Everything runs on 127.0.0.1 and every load step is bounded by --duration. See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bodies, wrk
from bench.servers import HOST, REPO, Server, WorkerMemory, request

MODELS = ("weaning", "ich")
GOALS = {
    "ratio_min": 0.60,
    "p99_ms_max": 10.0,
    "goal_connections": 16,
    "batch_server_ms_max": 8.0,
    "rss_mb_max": 150.0,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers for both apps (2)")
    p.add_argument("--threads", type=int, default=None, help="ECMO_THREADS (default: config's)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run")
    p.add_argument(
        "--slices", type=int, default=5, help="alternate the apps in this many slices per case"
    )
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up per case")
    p.add_argument("--connections", default="1,16,64", help="comma-separated (1,16,64)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated (weaning,ich)")
    p.add_argument("--runs", type=int, default=1, help="repeat everything; report medians")
    p.add_argument("--batch-size", type=int, default=1000, help="patients per batch request")
    p.add_argument("--batch-requests", type=int, default=30, help="timed batch requests per run")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (1: leaves CPU to gunicorn)")
    p.add_argument("--out", type=Path, default=REPO / "bench-results", help="results directory")
    p.add_argument("--keep-openblas-env", action="store_true", help="pass OPENBLAS_CORETYPE on")
    p.add_argument("--no-install", action="store_true", help="fail instead of apt-get install wrk")
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    p.add_argument(
        "--service-app", default="service.app:create_app()", help="gunicorn app of the service"
    )
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 300 or not 0 <= args.warmup <= 60:
        p.error("--duration must be 1..300 s and --warmup 0..60 s")
    if not 1 <= args.slices <= 20 or args.duration / args.slices < 1:
        p.error("--slices must be 1..20 and leave at least 1 s per slice")
    if not 1 <= args.runs <= 9 or not 1 <= args.workers <= 16:
        p.error("--runs must be 1..9 and --workers 1..16")
    if not 1 <= args.batch_size <= 100_000 or not 1 <= args.batch_requests <= 1000:
        p.error("--batch-size must be 1..100000 and --batch-requests 1..1000")
    args.connections = [int(c) for c in str(args.connections).split(",") if c]
    if any(not 1 <= c <= 1024 for c in args.connections):
        p.error("--connections must be 1..1024 each")
    args.models = [m for m in str(args.models).split(",") if m]
    return args


def server_ms(headers: dict[str, str]) -> float | None:
    """Server-side time from Server-Timing (dur in ms) or X-Process-Time (seconds, or "<n>ms")."""
    timing = headers.get("server-timing")
    if timing:
        for metric in timing.split(","):
            for param in metric.split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key == "dur":
                    return float(value)
    process = headers.get("x-process-time")
    if process:
        text = process.strip().lower()
        return float(text[:-2]) if text.endswith("ms") else float(text.rstrip("s")) * 1000.0
    return None


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def measure_batch(
    server: Server, model: str, body: bytes, n: int, warmup: int = 3
) -> dict[str, Any]:
    """Sequential batch requests on one keep-alive connection: end-to-end and server-side time."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
    path = f"/v1/models/{model}/predict/batch"
    e2e: list[float] = []
    srv: list[float] = []
    errors = 0
    statuses: dict[str, int] = {}
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            try:
                status, headers, data = request(server.port, "POST", path, body, conn=conn)
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
                continue
            elapsed = (time.perf_counter() - t0) * 1000.0
            if i < warmup:
                continue
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if not 200 <= status <= 299:
                errors += 1
                continue
            e2e.append(elapsed)
            ms = server_ms(headers)
            if ms is not None:
                srv.append(ms)
    finally:
        conn.close()
    return {
        "requests": n,
        "bytes": len(body),
        "statuses": statuses,
        "errors": errors,
        "e2e_p50_ms": statistics.median(e2e) if e2e else None,
        "e2e_p99_ms": pct(e2e, 99) if e2e else None,
        "server_p50_ms": statistics.median(srv) if srv else None,
        "server_p99_ms": pct(srv, 99) if srv else None,
        "server_timing_header": bool(srv),
    }


def check_endpoint(server: Server, path: str, body: bytes) -> bytes:
    status, _, data = request(server.port, "POST", path, body)
    if status != 200:
        raise RuntimeError(f"{server.name} {path} answered {status}: {data[:500]!r}")
    json.loads(data)
    return data


def blas_info(server: Server) -> Any:
    """Which BLAS kernel numpy runs with the servers' environment (threadpoolctl)."""
    code = "import json, numpy, threadpoolctl;print(json.dumps(threadpoolctl.threadpool_info()))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=server.env(), capture_output=True, text=True, check=False
    )
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": done.stderr[-500:]}


def one_run(
    run: int,
    args: argparse.Namespace,
    wrk_path: str,
    service: Server,
    floor: Server,
    body_files: dict[str, Path],
    batch_bodies: dict[str, bytes],
    say: Callable[[str], None],
) -> dict[str, Any]:
    cases = []
    i = 0
    slice_s = max(1.0, args.duration / args.slices)
    for model in args.models:
        for conns in args.connections:
            order = [floor, service] if (run + i) % 2 == 0 else [service, floor]
            i += 1
            slices: dict[str, list[wrk.WrkResult]] = {"service": [], "floor": []}
            for srv in order:
                if args.warmup >= 1:
                    url = f"{srv.base_url}/v1/models/{model}/predict"
                    wrk.run(wrk_path, url, body_files[model], conns, args.warmup, args.wrk_threads)
            # Alternate short slices so a burst of load from elsewhere hits both apps alike.
            for k in range(args.slices):
                for srv in order if k % 2 == 0 else order[::-1]:
                    url = f"{srv.base_url}/v1/models/{model}/predict"
                    slices[srv.name].append(
                        wrk.run(wrk_path, url, body_files[model], conns, slice_s, args.wrk_threads)
                    )
            s, f = combine(slices["service"]), combine(slices["floor"])
            pairs = zip(slices["service"], slices["floor"], strict=True)
            ratios = [a.rps / b.rps for a, b in pairs if b.rps]
            case = {
                "model": model,
                "connections": conns,
                "service": s,
                "floor": f,
                "ratio_rps": statistics.median(ratios) if ratios else 0.0,
                "slices": {k: [asdict(r) for r in v] for k, v in slices.items()},
            }
            say(
                f"  run {run + 1} {model:8s} c={conns:<3d} service {s['rps']:8.0f} req/s "
                f"p99 {s['p99_ms']:6.2f} ms | floor {f['rps']:8.0f} req/s p99 {f['p99_ms']:6.2f} ms"
                f" | ratio {case['ratio_rps']:.0%} errors {s['errors']}/{f['errors']}"
            )
            cases.append(case)
    batches = []
    for model in args.models:
        b = measure_batch(service, model, batch_bodies[model], args.batch_requests)
        batches.append({"model": model} | b)
        say(
            f"  run {run + 1} {model:8s} batch of {args.batch_size}: server p50 "
            f"{b['server_p50_ms']} ms, end-to-end p50 {b['e2e_p50_ms']:.1f} ms, errors {b['errors']}"
        )
    return {"cases": cases, "batches": batches}


def combine(results: list[wrk.WrkResult]) -> dict[str, Any]:
    """One app's slices of a case: medians of req/s, p50 and p99; requests and errors summed."""
    return {
        "rps": statistics.median(r.rps for r in results),
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "max_slice_p99_ms": max(r.p99_ms for r in results),
        "requests": sum(r.requests for r in results),
        "non2xx": sum(r.non2xx for r in results),
        "socket_errors": sum(r.socket_errors for r in results),
        "errors": sum(r.errors for r in results),
    }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs for every number; errors are summed (any error in any run counts)."""
    cases = []
    for idx, first in enumerate(runs[0]["cases"]):
        per = [r["cases"][idx] for r in runs]
        case: dict[str, Any] = {"model": first["model"], "connections": first["connections"]}
        for app in ("service", "floor"):
            case[app] = {
                k: _median([p[app][k] for p in per]) for k in ("rps", "p50_ms", "p99_ms")
            } | {"errors": sum(p[app]["errors"] for p in per)}
        case["ratio_rps"] = _median([p["ratio_rps"] for p in per])
        cases.append(case)
    batches = []
    for idx, first in enumerate(runs[0]["batches"]):
        per = [r["batches"][idx] for r in runs]
        b: dict[str, Any] = {"model": first["model"]}
        for k in ("e2e_p50_ms", "e2e_p99_ms", "server_p50_ms", "server_p99_ms"):
            b[k] = _median([p[k] for p in per])
        b["errors"] = sum(p["errors"] for p in per)
        batches.append(b)
    return {"cases": cases, "batches": batches}


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def table(
    summary: dict[str, Any], memory: dict[str, list[WorkerMemory]], runs: int, batch_size: int
) -> str:
    title = f"medians of {runs} runs" if runs > 1 else "one run"
    lines = [
        f"ECMO risk service vs floor ({title}; errors summed over runs)",
        f"{'case':<22}{'app':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'service/floor':>15}",
    ]
    for c in summary["cases"]:
        name = f"{c['model']} c={c['connections']}"
        for app in ("service", "floor"):
            r = c[app]
            ratio = f"{c['ratio_rps']:.0%}" if app == "service" else ""
            lines.append(
                f"{name:<22}{app:<9}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                f"{r['errors']:>8d}{ratio:>15}"
            )
            name = ""
    lines.append("")
    lines.append(
        f"{'batch of ' + str(batch_size):<22}{'':<9}{'server p50':>11}{'server p99':>11}"
        f"{'e2e p50':>9}{'e2e p99':>9}{'errors':>8}"
    )
    for b in summary["batches"]:
        lines.append(
            f"{b['model']:<22}{'service':<9}{_fmt(b['server_p50_ms']):>11}"
            f"{_fmt(b['server_p99_ms']):>11}{_fmt(b['e2e_p50_ms']):>9}{_fmt(b['e2e_p99_ms']):>9}"
            f"{b['errors']:>8d}"
        )
    lines.append("")
    lines.append("peak RSS per worker (VmHWM; PSS in brackets, shared pages split)")
    for app, workers in memory.items():
        cells = ", ".join(
            f"pid {w.pid}: {w.peak_rss_mb:.1f} MB [{_fmt(w.pss_mb, '.1f')}]" for w in workers
        )
        lines.append(f"  {app:<8} {cells}")
    return "\n".join(lines)


def goals(summary: dict[str, Any], memory: dict[str, list[WorkerMemory]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in summary["cases"]:
        if c["connections"] == GOALS["goal_connections"]:
            out.append(
                {
                    "goal": f"{c['model']} c=16 ratio >= 60%",
                    "value": c["ratio_rps"],
                    "met": c["ratio_rps"] >= GOALS["ratio_min"],
                }
            )
            p99 = c["service"]["p99_ms"]
            out.append(
                {"goal": f"{c['model']} c=16 p99 <= 10 ms", "value": p99, "met": p99 <= 10.0}
            )
    for b in summary["batches"]:
        v = b["server_p50_ms"]
        out.append(
            {
                "goal": f"{b['model']} batch server-side <= 8 ms (median)",
                "value": v,
                "met": v is not None and v <= GOALS["batch_server_ms_max"],
            }
        )
    peak = max((w.peak_rss_mb for w in memory["service"]), default=0.0)
    out.append({"goal": "service RSS per worker <= 150 MB", "value": peak, "met": peak <= 150.0})
    errors = sum(c[a]["errors"] for c in summary["cases"] for a in ("service", "floor"))
    errors += sum(b["errors"] for b in summary["batches"])
    out.append({"goal": "no errors in any run", "value": errors, "met": errors == 0})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        wrk_path = wrk.ensure_wrk(install=not args.no_install)
    except wrk.WrkError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir: Path = args.out / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    service = Server(
        "service",
        args.service_app,
        args.workers,
        args.threads,
        out_dir / "service.log",
        args.keep_openblas_env,
    )
    floor: Server | None = None
    try:
        say(f"bench: starting the service ({args.workers} workers) on {service.base_url}")
        service.start()
        body_files: dict[str, Path] = {}
        responses: dict[str, str] = {}
        batch_bodies: dict[str, bytes] = {}
        for model in args.models:
            body = bodies.encode(bodies.SINGLE[model])
            body_files[model] = out_dir / f"{model}.json"
            body_files[model].write_bytes(body)
            responses[model] = check_endpoint(service, f"/v1/models/{model}/predict", body).decode()
            batch_bodies[model] = bodies.encode(bodies.batch(model, args.batch_size))
            check_endpoint(service, f"/v1/models/{model}/predict/batch", batch_bodies[model])
        floor_file = out_dir / "floor-responses.json"
        floor_file.write_text(json.dumps(responses))
        floor = Server(
            "floor",
            f"bench.floor_app:create_app({str(floor_file)!r})",
            args.workers,
            args.threads,
            out_dir / "floor.log",
            args.keep_openblas_env,
        )
        say(f"bench: starting the floor app on {floor.base_url}")
        floor.start()
        for model in args.models:
            got = check_endpoint(
                floor, f"/v1/models/{model}/predict", body_files[model].read_bytes()
            )
            assert got.decode() == responses[model]
        runs = []
        for run in range(args.runs):
            runs.append(one_run(run, args, wrk_path, service, floor, body_files, batch_bodies, say))
        memory = {"service": service.memory(), "floor": floor.memory()}
        restarted = {
            s.name: sorted(set(s.worker_pids()) ^ set(s.worker_pids_at_start))
            for s in (service, floor)
        }
        blas = blas_info(service)
    finally:
        service.stop()
        if floor is not None:
            floor.stop()
        for srv in (service, floor):
            if srv is not None:
                trim_log(srv.log_path)
    summary = summarise(runs)
    goal_list = goals(summary, memory)
    if any(restarted.values()):
        goal_list.append({"goal": "no worker restarts", "value": restarted, "met": False})
    report = table(summary, memory, args.runs, args.batch_size)
    print(report)
    print("")
    for g in goal_list:
        print(f"{'MET    ' if g['met'] else 'NOT MET'} {g['goal']}: {g['value']}")
    result = {
        "created": stamp,
        "command": [sys.executable, "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "blas": blas},
        "response_bytes": {m: len(r) for m, r in responses.items()},
        "runs": runs,
        "summary": summary,
        "memory": {k: [asdict(w) for w in v] for k, v in memory.items()},
        "goals": goal_list,
    }
    text = json.dumps(result, indent=2)
    (out_dir / "results.json").write_text(text)
    (args.out / "latest.json").write_text(text)
    (out_dir / "table.txt").write_text(report + "\n")
    say(f"bench: results in {out_dir / 'results.json'} (and {args.out / 'latest.json'})")
    return 1 if args.check and not all(g["met"] for g in goal_list) else 0


def trim_log(path: Path, keep_bytes: int = 256 * 1024) -> None:
    """Keep only the end of a server log: one JSON line per request adds up to many MB."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size > keep_bytes:
        with path.open("rb") as fh:
            fh.seek(size - keep_bytes)
            tail = fh.read()
        path.write_bytes(tail[tail.find(b"\n") + 1 :])


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
