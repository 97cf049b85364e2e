"""python -m bench.profile: sample the service's workers with py-spy while wrk loads them.

Prints the functions that took the most samples (own time and inclusive time, as percentages of
all samples in the workers) and writes the collapsed stacks (flamegraph input) under
bench-results/. Needs py-spy (`pip install py-spy`) and ptrace rights (root, or
kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import bodies, wrk
from bench.servers import REPO, Server


def summarise(collapsed: Path, top: int, batch: bool = False) -> str:
    """Own and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    pending = ""
    for line in collapsed.read_text().splitlines():
        # A frame name can hold a newline (py-spy prints some objects' repr): such a record spans
        # several lines, and only its last line ends in the sample count.
        stack, _, count_text = (pending + line).rpartition(" ")
        if not count_text.isdigit():
            pending += line
            continue
        pending = ""
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        # Idle workers sit in select/accept/poll: keep them out of the shares.
        total += count
        if frames:
            own[frames[-1]] += count
            for f in set(frames):
                incl[f] += count
    lines = [f"{total} samples in the workers", "", "own time (self):"]
    for f, c in own.most_common(top):
        lines.append(f"  {100 * c / total:5.1f} %  {f}")
    lines += ["", "inclusive time:"]
    for f, c in incl.most_common(top):
        lines.append(f"  {100 * c / total:5.1f} %  {f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--model", default="weaning")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=15.0, help="seconds sampled (<= 120)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--batch", action="store_true", help="profile 1,000-patient batch requests")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--gil", action="store_true", help="only samples holding the GIL (Python CPU)")
    p.add_argument(
        "--app", default="service.app:create_app()", help="gunicorn app (e.g. the floor app)"
    )
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 120:
        p.error("--duration must be 1..120 s")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("bench.profile: py-spy not found; `pip install py-spy`", file=sys.stderr)
        return 2
    wrk_path = wrk.ensure_wrk()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir: Path = args.out / f"profile-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    server = Server("service", args.app, args.workers, None, out_dir / "log")
    server.start()
    try:
        if args.batch:
            body = bodies.encode(bodies.batch(args.model, 1000))
            path = f"/v1/models/{args.model}/predict/batch"
        else:
            body = bodies.encode(bodies.SINGLE[args.model])
            path = f"/v1/models/{args.model}/predict"
        body_file = out_dir / "body.json"
        body_file.write_bytes(body)
        url = server.base_url + path
        wrk.run(wrk_path, url, body_file, args.connections, 2)  # warm-up
        result: list[wrk.WrkResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                wrk.run(wrk_path, url, body_file, args.connections, args.duration + 2, timeout_s=10)
            )
        )
        load.start()
        collapsed = out_dir / "stacks.txt"
        assert server.proc is not None
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(server.proc.pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--duration",
                str(round(args.duration)),
                "--nonblocking",
                *(["--gil"] if args.gil else []),
                "--output",
                str(collapsed),
            ],
            check=True,
            capture_output=True,
        )
        load.join()
    finally:
        server.stop()
    report = summarise(collapsed, args.top)
    if result:
        r = result[0]
        report = (
            f"{args.model} {'batch' if args.batch else 'single'} c={args.connections}: "
            f"{r.rps:.0f} req/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms errors {r.errors} "
            f"(under py-spy)\n" + report
        )
    (out_dir / "summary.txt").write_text(report + "\n")
    print(report)
    print(f"\nstacks: {collapsed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
