"""python -m bench.parts, shortened: it times every part of a batch for both models (in a
subprocess: it sets up the collector as a gunicorn worker does)."""

from __future__ import annotations

import subprocess
import sys

from bench.servers import REPO


def test_every_part_is_timed_for_both_models() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.parts", "--batch-size", "20", "--repeat", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"weaning", "ich"}, done.stdout
    assert all(len(times) == 5 and all(float(t) >= 0 for t in times) for times in rows.values())
