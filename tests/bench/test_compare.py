"""python -m bench.compare, shortened: this checkout against itself answers every batch and
prints a ratio per model; a directory that is not a set-up checkout is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import compare
from bench.servers import REPO

pytestmark = pytest.mark.slow


def test_this_checkout_against_itself_gives_a_ratio_per_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = compare.main([str(REPO), "--rounds", "2", "--batches", "3", "--batch-size", "50"])
    out = capsys.readouterr().out
    assert status == 0, out
    for model in compare.MODELS:
        match = re.search(rf"{model}: this / other = (\d+\.\d+)", out)
        assert match is not None, out
        assert float(match.group(1)) > 0
        # Both servers were timed in both rounds.
        assert len(re.findall(rf"{model} \d+\.\d+ \(\d+\.\d+, \d+\.\d+\)", out)) == 2, out


def test_a_directory_that_is_not_a_set_up_checkout_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        compare.main([str(tmp_path)])
    assert exc.value.code == 2
    assert "not a set-up checkout" in capsys.readouterr().err
