#!/usr/bin/env python3
"""Bounded HTTP load test for operators (standard library only).

Examples:
    python scripts/loadtest.py http://127.0.0.1:8000/health/live -d 5 -c 4
    python scripts/loadtest.py http://127.0.0.1:8000/v1/models/weaning/predict \\
        -X POST --body-file weaning.json -H 'Content-Type: application/json' -c 16 -d 10
    python scripts/loadtest.py URL -X POST --body-file b.json --rate 200 -d 30   # open loop

Two modes:
- closed loop (default): --concurrency workers, each sends the next request when the previous
  answer arrives (like wrk or ab);
- open loop (--rate R): requests are scheduled at R per second in total, whatever the server
  does, and latency is measured from the *scheduled* send time, so a stalling server shows up
  in the percentiles instead of silently lowering the rate (no coordinated omission).

Every run is bounded: --duration (at most 600 s) and --max-requests (default 1,000,000); the
script stops by itself. Non-loopback targets need --allow-remote, so a mistyped URL does not
load a production host.

Limits: one Python process with threads and keep-alive connections, so it can use at most about
one core (the GIL). When it runs on the server's machine it also takes that core from the server.
The "client CPU" line says how busy it was; at CLIENT_BOUND_PCT % of one core or more the result
says the client, not the server, was the bottleneck (the req/s is then a lower bound, and wrk on
the same server typically measures much more: see docs/OPERATIONS.md for the same test with wrk).

Runs longer than --progress seconds (default 5) print a progress line to stderr every --progress
seconds (0 turns it off).
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_DURATION_S = 600.0
# A threaded Python client cannot go much beyond one core: from here on it is the limit.
CLIENT_BOUND_PCT = 75.0


@dataclass
class Tally:
    """One worker's results; merged at the end (no lock on the hot path)."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bytes_read: int = 0


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse_target(url: str, allow_remote: bool) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"loadtest: {url!r} is not an http(s) URL")
    host = parts.hostname
    if not allow_remote and not _is_loopback(host):
        raise SystemExit(
            f"loadtest: {host} is not a loopback address; pass --allow-remote to load it"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, path)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url")
    p.add_argument("-X", "--method", default="GET")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-c", "--concurrency", type=int, default=None, help="closed loop (1)")
    mode.add_argument("-r", "--rate", type=float, default=None, help="open loop: requests/s")
    p.add_argument("-d", "--duration", type=float, default=10.0, help="seconds (<= 600)")
    p.add_argument("-n", "--max-requests", type=int, default=1_000_000, help="hard cap")
    p.add_argument("--body-file", help="request body read from this file")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request seconds")
    p.add_argument("--threads", type=int, default=None, help="open loop senders (default 32)")
    p.add_argument("--allow-remote", action="store_true", help="permit a non-loopback host")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--progress", type=float, default=5.0, help="seconds between progress lines (0: none)"
    )
    args = p.parse_args(argv)
    if not 0 < args.duration <= MAX_DURATION_S:
        p.error(f"--duration must be in (0, {MAX_DURATION_S:.0f}]")
    if args.max_requests < 1:
        p.error("--max-requests must be >= 1")
    if args.concurrency is not None and not 1 <= args.concurrency <= 1024:
        p.error("--concurrency must be 1..1024")
    if args.rate is not None and not 0 < args.rate <= 100_000:
        p.error("--rate must be in (0, 100000]")
    if args.progress < 0:
        p.error("--progress must be >= 0")
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            p.error(f"header {item!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    args.headers = headers
    return args


class Budget:
    """Hands out request tickets until the cap or the deadline; thread-safe."""

    def __init__(self, max_requests: int, deadline: float) -> None:
        self._left = max_requests
        self._lock = threading.Lock()
        self.deadline = deadline

    def take(self) -> bool:
        if time.perf_counter() >= self.deadline:
            return False
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


def _connect(t: Target, timeout: float) -> http.client.HTTPConnection:
    if t.scheme == "https":
        return http.client.HTTPSConnection(t.host, t.port, timeout=timeout)
    return http.client.HTTPConnection(t.host, t.port, timeout=timeout)


class Sender:
    def __init__(
        self, t: Target, method: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> None:
        self.t, self.method, self.body, self.headers, self.timeout = (
            t,
            method,
            body,
            headers,
            timeout,
        )
        self.conn: http.client.HTTPConnection | None = None
        self.tally = Tally()
        # perf_counter when this sender's last request ended (the run's end is the latest).
        self.finished = 0.0

    def send(self, started: float) -> None:
        """One request; latency counted from `started` (perf_counter seconds)."""
        if self.conn is None:
            self.conn = _connect(self.t, self.timeout)
        try:
            self.conn.request(self.method, self.t.path, body=self.body, headers=self.headers)
            resp = self.conn.getresponse()
            self.tally.bytes_read += len(resp.read())
            self.tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            self.tally.statuses[resp.status] += 1
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            self.tally.errors[kind] += 1
            self.close()
        self.finished = time.perf_counter()

    def done(self) -> int:
        """Requests finished so far (read from the main thread for progress lines)."""
        return len(self.tally.latencies_ms) + sum(self.tally.errors.values())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def closed_loop(sender: Sender, budget: Budget, start: float) -> None:
    # Every connection starts at the same instant, the one the duration is measured from.
    now = time.perf_counter()
    if start > now:
        time.sleep(start - now)
    try:
        while budget.take():
            sender.send(time.perf_counter())
    finally:
        sender.close()


def open_loop(
    sender: Sender, budget: Budget, start: float, interval: float, index: int, stride: int
) -> None:
    """Send request k (k = index, index+stride, ...) at start + k*interval."""
    k = index
    try:
        while True:
            due = start + k * interval
            if due >= budget.deadline:
                return
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            if not budget.take():
                return
            sender.send(due)
            k += stride
    finally:
        sender.close()


def percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def run(args: argparse.Namespace) -> dict[str, object]:
    target = parse_target(args.url, args.allow_remote)
    body = None
    if args.body_file:
        with open(args.body_file, "rb") as fh:
            body = fh.read()
    method = args.method.upper()
    if args.rate is not None:
        n_threads = args.threads or 32
    else:
        n_threads = args.concurrency or 1
    senders = [Sender(target, method, body, args.headers, args.timeout) for _ in range(n_threads)]
    cpu0 = time.process_time()
    cpu_wall0 = time.perf_counter()
    start = cpu_wall0 + 0.05
    budget = Budget(args.max_requests, start + args.duration)
    if args.rate is not None:
        interval = 1.0 / args.rate
        threads = [
            threading.Thread(target=open_loop, args=(s, budget, start, interval, i, n_threads))
            for i, s in enumerate(senders)
        ]
    else:
        threads = [threading.Thread(target=closed_loop, args=(s, budget, start)) for s in senders]
    for th in threads:
        th.daemon = True
        th.start()
    # Bounded even if the server hangs: each request has its own --timeout on top of this.
    give_up = start + args.duration + args.timeout + 5
    show = args.progress > 0 and args.duration > args.progress
    next_line = start + args.progress
    while True:
        alive = [th for th in threads if th.is_alive()]
        now = time.perf_counter()
        if not alive or now >= give_up:
            break
        until = min(give_up, next_line) if show else give_up
        alive[0].join(timeout=max(0.0, until - now))
        if show and time.perf_counter() >= next_line:
            if any(th.is_alive() for th in threads):
                print(progress_line(senders, start, args.duration), file=sys.stderr, flush=True)
            next_line += args.progress
    # The run lasted from the common start to the last answer (never negative: a run that ends
    # before its first request is sent lasted 0 s).
    ended = max([start, *(s.finished for s in senders)])
    elapsed = ended - start
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - cpu_wall0
    latencies = sorted(x for s in senders for x in s.tally.latencies_ms)
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for s in senders:
        statuses.update(s.tally.statuses)
        errors.update(s.tally.errors)
    responses = sum(statuses.values())
    total = responses + sum(errors.values())
    return {
        "url": args.url,
        "method": method,
        "mode": "open" if args.rate is not None else "closed",
        "rate_target": args.rate,
        "concurrency": n_threads,
        "duration_s": round(elapsed, 3),
        "requests": total,
        "responses": responses,
        "rps": round(total / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {
            "min": latencies[0] if latencies else math.nan,
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": latencies[-1] if latencies else math.nan,
        },
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(sorted(errors.items())),
        "non2xx": sum(v for k, v in statuses.items() if not 200 <= k <= 299),
        "bytes_read": sum(s.tally.bytes_read for s in senders),
        "client_cpu_pct_of_one_core": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
        "client_bound": client_bound(100.0 * cpu / wall if wall > 0 else 0.0),
        "unfinished_threads": sum(th.is_alive() for th in threads),
    }


def client_bound(cpu_pct_of_one_core: float) -> bool:
    """Whether the client's own CPU use says it, not the server, set the pace."""
    return cpu_pct_of_one_core >= CLIENT_BOUND_PCT


def progress_line(senders: Sequence[Sender], start: float, duration: float) -> str:
    now = time.perf_counter() - start
    done = sum(s.done() for s in senders)
    errors = sum(sum(s.tally.errors.values()) for s in senders)
    rate = done / now if now > 0 else 0.0
    return (
        f"progress:   {min(now, duration):6.1f}/{duration:.0f} s  {done} requests  "
        f"{rate:.0f} req/s  errors {errors}"
    )


def render(r: dict[str, object]) -> str:
    lat = r["latency_ms"]
    assert isinstance(lat, dict)
    statuses = r["statuses"]
    errors = r["errors"]
    assert isinstance(statuses, dict) and isinstance(errors, dict)
    mode = (
        f"open loop at {r['rate_target']} req/s ({r['concurrency']} senders)"
        if r["mode"] == "open"
        else f"closed loop, {r['concurrency']} connections"
    )
    lines = [
        f"{r['method']} {r['url']}  ({mode})",
        f"requests:   {r['requests']} in {r['duration_s']} s = {r['rps']} req/s",
        "latency ms: " + "  ".join(f"{k} {v:.2f}" for k, v in lat.items()),
        "statuses:   " + (", ".join(f"{k}: {v}" for k, v in statuses.items()) or "none"),
        "errors:     " + (", ".join(f"{k}: {v}" for k, v in errors.items()) or "0"),
        f"non-2xx:    {r['non2xx']}",
        f"client CPU: {r['client_cpu_pct_of_one_core']} % of one core",
    ]
    if r["client_bound"]:
        lines.append(
            f"WARNING:    the client was the bottleneck (>= {CLIENT_BOUND_PCT:.0f} % of one core): "
            "the req/s above is this script's ceiling, not the server's; measure with wrk "
            "(docs/OPERATIONS.md)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["requests"] and not result["errors"] and not result["non2xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
