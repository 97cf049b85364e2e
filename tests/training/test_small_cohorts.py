"""Issue 13 item 5: a hospital-size cohort is judged by bootstrap optimism correction on every row
(not on a tiny held-out split), its events per predictor are reported, and EPV < 10 is warned
about in the command's output and in the manifest."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.core.kinds import ICH
from service.training.__main__ import main
from service.training.cohort import write_csv
from service.training.train import choose_validation, simulated_cohort


@pytest.fixture(scope="module")
def small_ich(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """ich retrained on 300 rows (about 30 events), as a hospital would."""
    tmp = tmp_path_factory.mktemp("small")
    csv_path = tmp / "site.csv"
    write_csv(simulated_cohort(ICH, 300, 21), csv_path)
    out = tmp / "models"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["ich", "--data", str(csv_path), "--out", str(out), "--bootstrap", "200"])
    assert code == 0
    doc = json.loads((out / "ich" / "1.0.0" / "manifest.json").read_text())
    return out / "ich" / "1.0.0", doc, err.getvalue()


def test_a_small_cohort_is_judged_on_every_row_with_bootstrap_optimism(small_ich):
    _, doc, _ = small_ich
    m = doc["metrics"]
    assert m["validation"] == "bootstrap"
    assert "optimism" in m["evaluated_on"]
    assert m["n"] == 300 and doc["training"]["split"]["n_held_out"] == 0
    assert doc["training"]["split"]["n_train"] == 300
    opt = m["optimism"]
    assert opt["replicates"] >= 190
    # Overfitting on ~30 events: the apparent AUC flatters and the corrected slope shrinks.
    assert opt["auc"] > 0
    assert m["auc"] == pytest.approx(m["apparent"]["auc"] - opt["auc"])
    assert m["auc"] < m["apparent"]["auc"]
    assert m["calibration_slope"] < 1.0
    assert m["calibration_slope"] == pytest.approx(
        m["apparent"]["calibration_slope"] - opt["calibration_slope"]
    )


def test_events_per_predictor_below_10_is_warned_in_output_and_manifest(small_ich):
    vdir, doc, stderr = small_ich
    epv = doc["metrics"]["events_per_predictor"]
    events = int(round(doc["metrics"]["prevalence"] * 300))
    assert epv["value"] == pytest.approx(min(events, 300 - events) / 4)
    assert epv["value"] < 10
    assert "warning: events per predictor" in stderr
    assert any("events per predictor" in w for w in doc["warnings"])
    card = (vdir / "MODEL_CARD.md").read_text()
    assert "## Warnings" in card and "events per predictor" in card.lower()


def test_a_large_cohort_keeps_the_held_out_split_and_no_epv_warning(small_models):
    doc = json.loads((small_models / "weaning" / "1.0.0" / "manifest.json").read_text())
    assert doc["metrics"]["validation"] == "split"
    assert doc["metrics"]["events_per_predictor"]["value"] >= 10
    assert doc["warnings"] == []


@pytest.mark.parametrize(
    ("events", "n", "expected"),
    [(400, 4000, "split"), (396, 4000, "bootstrap"), (30, 300, "bootstrap"), (3600, 4000, "split")],
)
def test_auto_holds_out_a_split_only_with_100_events_and_non_events(events, n, expected):
    y = np.zeros(n, dtype=np.int64)
    y[:events] = 1
    assert choose_validation(y, 0.25) == expected


def test_the_design_can_be_forced(tmp_path, capsys):
    csv_path = tmp_path / "c.csv"
    write_csv(simulated_cohort(ICH, 300, 21), csv_path)
    out = tmp_path / "m"
    args = ["ich", "--data", str(csv_path), "--out", str(out), "--bootstrap", "100"]
    assert main([*args, "--validation", "split"]) == 0
    doc = json.loads((out / "ich" / "1.0.0" / "manifest.json").read_text())
    held_out = doc["training"]["split"]["n_held_out"]
    assert doc["metrics"]["validation"] == "split" and doc["metrics"]["n"] == held_out
    assert 70 <= held_out <= 80
    assert f"held-out n={held_out}" in capsys.readouterr().out
