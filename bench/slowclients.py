"""python -m bench.slowclients: slow clients against the deployment's entry point (issue 18.1).

Starts the same command as scripts/serve and the Dockerfile CMD (gunicorn -c
service/gunicorn_conf.py, which puts nginx in front unless ECMO_PROXY=off) on a free 127.0.0.1
port with the shipped models, then for --seconds:

- `--slow` raw-socket clients trickle a request one byte every --interval seconds: half of them
  the request line and headers, half complete headers and then the body. A client whose
  connection is closed reconnects and starts again (as a misbehaving caller would).
- `--normal` clients send ordinary single predictions back to back (a new connection each);
- one prober asks GET /health/live every 0.5 s with a 1 s timeout (the chart's liveness probe
  allows 3 s).

It prints, and returns as JSON, the normal requests' count, failures and latency percentiles
and the liveness probes that failed. `--proxy off` measures gunicorn alone (the process model
before issue 18), for the before/after figures. Every step is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import HOST, REPO, Server

PREDICT_PATH = "/v1/models/weaning/predict"
PREDICT_BODY = json.dumps(
    {
        "inputs": {
            "apache_ii": 18,
            "lactate_24h": {"value": 2.1, "unit": "mmol/L"},
            "vis_0h": 20.0,
            "vis_24h": 8.0,
        }
    }
).encode()


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@dataclass
class Outcome:
    normal_sent: int = 0
    normal_ok: int = 0
    normal_failures: list[str] = field(default_factory=list)
    normal_p50_ms: float | None = None
    normal_p99_ms: float | None = None
    normal_max_ms: float | None = None
    live_probes: int = 0
    live_failures: list[str] = field(default_factory=list)
    slow_connections: int = 0
    slow_bytes_sent: int = 0


def _slow_request(body_slow: bool) -> tuple[bytes, bytes]:
    """(sent at once, trickled). Header-slow: everything trickles. Body-slow: headers at once."""
    head = (
        f"POST {PREDICT_PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(PREDICT_BODY)}\r\n\r\n"
    ).encode()
    return (head, PREDICT_BODY) if body_slow else (b"", head + PREDICT_BODY)


def _slow_client(
    port: int, body_slow: bool, interval: float, deadline: float, out: Outcome, lock: threading.Lock
) -> None:
    at_once, trickled = _slow_request(body_slow)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                with lock:
                    out.slow_connections += 1
                if at_once:
                    s.sendall(at_once)
                for i in range(len(trickled)):
                    if time.monotonic() >= deadline:
                        return
                    s.sendall(trickled[i : i + 1])
                    with lock:
                        out.slow_bytes_sent += 1
                    time.sleep(interval)
                with contextlib.suppress(OSError):
                    s.recv(65536)  # it finished: read the answer, then start again
        except OSError:
            time.sleep(min(interval, 0.2))  # closed by the server (a timeout): reconnect


def _get(port: int, method: str, path: str, body: bytes | None, timeout: float) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _normal_client(
    port: int, deadline: float, timeout: float, out: Outcome, lat: list[float], lock: threading.Lock
) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            status = _get(port, "POST", PREDICT_PATH, PREDICT_BODY, timeout)
            error = None if status == 200 else f"status {status}"
        except (OSError, http.client.HTTPException) as exc:
            error = repr(exc)
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            out.normal_sent += 1
            lat.append(elapsed)
            if error is None:
                out.normal_ok += 1
            else:
                out.normal_failures.append(f"{error} after {elapsed:.0f} ms")


def _prober(port: int, deadline: float, out: Outcome, lock: threading.Lock) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            status = _get(port, "GET", "/health/live", None, 1.0)
            error = None if status == 200 else f"status {status}"
        except (OSError, http.client.HTTPException) as exc:
            error = repr(exc)
        with lock:
            out.live_probes += 1
            if error is not None:
                out.live_failures.append(error)
        time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))


def run(
    port: int,
    slow: int = 8,
    normal: int = 2,
    seconds: float = 10.0,
    interval: float = 1.0,
    timeout: float = 5.0,
) -> Outcome:
    """The scenario against a server already listening on 127.0.0.1:port."""
    out, lock = Outcome(), threading.Lock()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    slow_threads = [
        threading.Thread(
            target=_slow_client, args=(port, i % 2 == 1, interval, deadline, out, lock), daemon=True
        )
        for i in range(slow)
    ]
    for t in slow_threads:
        t.start()
    time.sleep(min(1.0, seconds / 4))  # let the slow clients take their connections first
    others = [
        threading.Thread(
            target=_normal_client, args=(port, deadline, timeout, out, latencies, lock), daemon=True
        )
        for _ in range(normal)
    ]
    others.append(threading.Thread(target=_prober, args=(port, deadline, out, lock), daemon=True))
    for t in others:
        t.start()
    for t in others + slow_threads:
        t.join(seconds + timeout + 5)
    if latencies:
        out.normal_p50_ms = round(pct(latencies, 50), 2)
        out.normal_p99_ms = round(pct(latencies, 99), 2)
        out.normal_max_ms = round(max(latencies), 2)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.slowclients", description=__doc__)
    p.add_argument("--slow", type=int, default=8, help="slow clients (8)")
    p.add_argument("--normal", type=int, default=2, help="normal clients (2)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the run (20)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between slow bytes (1)")
    p.add_argument("--workers", type=int, default=2, help="ECMO_WORKERS (2)")
    p.add_argument(
        "--proxy", choices=("nginx", "off"), default="nginx", help="ECMO_PROXY (nginx: shipped)"
    )
    p.add_argument("--out", type=Path, default=REPO / "bench-results", help="results directory")
    args = p.parse_args(argv)
    if not 1 <= args.seconds <= 600 or not 0 <= args.slow <= 256 or not 1 <= args.normal <= 64:
        p.error("--seconds must be 1..600, --slow 0..256, --normal 1..64")
    args.out.mkdir(parents=True, exist_ok=True)
    server = Server(
        "slowclients",
        "service.app:create_app()",
        args.workers,
        None,
        args.out / "slowclients-server.log",
        extra_env={"ECMO_PROXY": args.proxy},
    )
    server.start()
    try:
        outcome = run(server.port, args.slow, args.normal, args.seconds, args.interval)
    finally:
        server.stop()
    result: dict[str, Any] = {"settings": vars(args) | {"out": str(args.out)}, **asdict(outcome)}
    result["normal_failures"] = outcome.normal_failures[:10]
    result["normal_failure_count"] = len(outcome.normal_failures)
    result["live_failures"] = outcome.live_failures[:10]
    result["live_failure_count"] = len(outcome.live_failures)
    (args.out / f"slowclients-{args.proxy}.json").write_text(json.dumps(result, indent=2))
    print(
        f"proxy={args.proxy} slow={args.slow} seconds={args.seconds:g}: normal "
        f"{outcome.normal_ok}/{outcome.normal_sent} ok, p50 {outcome.normal_p50_ms} ms, "
        f"p99 {outcome.normal_p99_ms} ms, max {outcome.normal_max_ms} ms; liveness "
        f"{outcome.live_probes - len(outcome.live_failures)}/{outcome.live_probes} ok; "
        f"{outcome.slow_connections} slow connections"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
