"""Run wrk against one URL and parse its ``--latency`` report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([0-9.]+)(us|ms|s|m|h)"


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    socket_errors: int
    """connect + read + write + timeout, as wrk counts them."""
    non2xx: int
    """Responses with a status outside 200-299 (counted by post.lua)."""

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non2xx


def ensure_wrk(install: bool = True) -> str:
    """Return wrk's path, installing Debian's package when allowed and possible; else explain."""
    found = shutil.which("wrk")
    if found:
        return found
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        print("bench: wrk not found; installing Debian's wrk package ...", file=sys.stderr)
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise WrkError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkError(
        "wrk is required and was not found. Install it (Debian/Ubuntu: `apt-get install wrk`, "
        "macOS: `brew install wrk`) and run the benchmark again."
    )


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """Parse wrk's text report (run with --latency and post.lua)."""

    def need(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise WrkError(f"cannot find {pattern!r} in wrk output:\n{output}")
        return match

    pct = {}
    for p in ("50", "75", "90", "99"):
        m = need(rf"^\s*{p}%\s+{_DURATION}\s*$")
        pct[p] = _ms(m.group(1), m.group(2))
    done = need(r"^\s*(\d+) requests in " + _DURATION)
    rps = need(r"^Requests/sec:\s+([0-9.]+)")
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = sum(int(g) for g in sock.groups()) if sock else 0
    non2xx = int(need(r"^BENCH_NON2XX (\d+)").group(1))
    return WrkResult(
        requests=int(done.group(1)),
        duration_s=_ms(done.group(2), done.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=pct["50"],
        p75_ms=pct["75"],
        p90_ms=pct["90"],
        p99_ms=pct["99"],
        socket_errors=socket_errors,
        non2xx=non2xx,
    )


def run(
    wrk: str,
    url: str,
    body_file: Path,
    connections: int,
    duration_s: float,
    threads: int = 1,
    timeout_s: float = 2.0,
) -> WrkResult:
    """One bounded wrk run (loopback only: the harness never builds another URL)."""
    cmd = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file))
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return parse(done.stdout)
