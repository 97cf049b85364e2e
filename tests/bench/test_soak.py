"""python -m bench.soak, shortened: its checks run against the real entry point and pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import soak

pytestmark = pytest.mark.slow


def test_a_short_soak_with_recycling_passes_its_checks(tmp_path: Path) -> None:
    status = soak.main(
        ["--minutes", "0.1", "--warmup", "0", "--max-requests", "50", "--jitter", "5",
         "--clients", "2", "--out", str(tmp_path)]
    )  # fmt: skip
    result = json.loads((tmp_path / "soak.json").read_text())
    assert status == 0, result["checks"]
    assert result["worker_exits"]["clean"] >= 1 and result["requests_ok"] > 100
    assert all(c["metrics"] == c["clients"] for c in result["counters"].values())
