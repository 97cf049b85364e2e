"""Issue 13 item 6: what a clinician reading the card needs and did not find."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, confusion_matrix

from service.core.kinds import MODEL_KINDS
from service.core.registry import load_version
from service.training import metrics, plots
from service.training.kinds import TRAINING_KINDS

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [REPO / "models" / "weaning" / "1.0.0", REPO / "models" / "ich" / "1.0.0"]


def _doc(vdir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((vdir / "manifest.json").read_text())
    return doc


@pytest.mark.parametrize("kind", ["weaning", "ich"])
def test_outcome_and_every_predictor_have_a_definition_and_a_window(small_models, kind):
    vdir = small_models / kind / "1.0.0"
    doc = _doc(vdir)
    assert doc["outcome_definition"]
    predictors = {p["name"]: p for p in doc["predictors"]}
    assert set(predictors) == set(MODEL_KINDS[kind].csv_columns)
    assert all(p["definition"] and p["window"] for p in predictors.values())
    card = (vdir / "MODEL_CARD.md").read_text()
    assert "## Outcome" in card and "measurement window" in card
    for name, p in predictors.items():
        assert f"| `{name}` | {p['definition']} | {p['window']} |" in card


@pytest.mark.parametrize("kind", ["weaning", "ich"])
def test_calibration_intercept_slope_and_brier_have_confidence_intervals(small_models, kind):
    vdir = small_models / kind / "1.0.0"
    m = _doc(vdir)["metrics"]
    for key in ("calibration_intercept", "calibration_slope", "brier"):
        lo, hi = m[f"{key}_ci95"]
        assert lo < m[key] < hi, key
    card = (vdir / "MODEL_CARD.md").read_text()
    assert re.search(r"Calibration slope: [0-9.]+ \(95% CI [0-9.]+–[0-9.]+\)", card)
    assert re.search(r"Brier score \(bootstrap 95% CI\) \| [0-9.]+ \([0-9.]+–[0-9.]+\)", card)


@pytest.mark.parametrize("kind", ["weaning", "ich"])
def test_the_reference_patient_is_the_one_contributions_are_measured_against(small_models, kind):
    vdir = small_models / kind / "1.0.0"
    ref = _doc(vdir)["reference_patient"]
    loaded = load_version(vdir)
    means = [ref["features"][n] for n in loaded.kind.feature_names]
    assert means == pytest.approx(list(loaded.linear.means), rel=1e-12)
    # At the reference patient every contribution is 0 and the log-odds is the baseline.
    assert ref["log_odds"] == pytest.approx(loaded.linear.baseline, abs=1e-9)
    assert loaded.linear.contributions(means) == pytest.approx([0.0] * len(means), abs=1e-12)
    assert "Reference patient for contributions" in (vdir / "MODEL_CARD.md").read_text()


def test_each_risk_band_cut_off_says_where_it_comes_from_with_sensitivity_and_ppv(tmp_path):
    from service.training.__main__ import main
    from service.training.cohort import read_csv, write_csv
    from service.training.fit import predict_proba
    from service.training.train import simulated_cohort

    kind = MODEL_KINDS["ich"]
    csv_path = tmp_path / "c.csv"
    write_csv(simulated_cohort(kind, 400, 3), csv_path)
    args = ["ich", "--data", str(csv_path), "--out", str(tmp_path), "--bootstrap", "100"]
    assert main(args) == 0
    vdir = tmp_path / "ich" / "1.0.0"
    doc = _doc(vdir)
    assert all(b["cutoff_source"] for b in doc["risk_bands"])
    # Evaluated on every row (bootstrap design): recompute independently with sklearn.
    import joblib

    cohort = read_csv(kind, csv_path)
    p = predict_proba(joblib.load(vdir / "model.joblib"), cohort.features)
    rows = doc["metrics"]["risk_band_cutoffs"]
    assert [r["cutoff"] for r in rows] == [b["lower"] for b in doc["risk_bands"] if b["lower"] > 0]
    for r in rows:
        tn, fp, fn, tp = confusion_matrix(cohort.outcome, p >= r["cutoff"]).ravel()
        assert r["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert r["ppv"] == pytest.approx(tp / (tp + fp))
        assert r["npv"] == pytest.approx(tn / (tn + fn))
    card = (vdir / "MODEL_CARD.md").read_text()
    assert "| cut-off | n at or above | sensitivity | specificity | PPV | NPV |" in card
    assert "design choice of this service, not published" in card
    assert doc["metrics"]["brier"] != pytest.approx(
        brier_score_loss(cohort.outcome, p)
    )  # corrected


@pytest.mark.parametrize("vdir", SHIPPED, ids=lambda p: p.parent.name)
def test_shipped_cards_cite_only_files_the_repository_contains(vdir):
    for text in ((vdir / "MODEL_CARD.md").read_text(), (vdir / "manifest.json").read_text()):
        for ref in re.findall(r"[\w./-]+\.md\b", text):
            if ref == "MODEL_CARD.md":
                continue
            assert (REPO / ref).is_file(), f"{vdir}: cites {ref}, which the repository lacks"
        assert "CLINICAL.md" not in text.replace("docs/CLINICAL.md", "")


@pytest.mark.parametrize("name", sorted(TRAINING_KINDS))
def test_citations_are_complete(name):
    tk = TRAINING_KINDS[name]
    for c in tk.sources:
        rendered = c.render()
        assert re.search(r"(19|20)\d\d", rendered) or "article" in rendered, rendered
    from service.training.provenance import references

    refs = references(name)
    assert any("TRIPOD" in r for r in refs) and any("Harrell" in r for r in refs)
    assert all(re.search(r"(19|20)\d\d", r) for r in refs[1:])


def test_calibration_plot_title_says_simulated_only_for_simulated_cohorts(tmp_path, monkeypatch):
    import matplotlib.axes

    titles: list[str] = []
    original = matplotlib.axes.Axes.set_title

    def spy(self, label, *args, **kwargs):
        titles.append(label)
        return original(self, label, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", spy)
    from service.training.__main__ import main
    from service.training.cohort import write_csv
    from service.training.train import simulated_cohort

    base = ["--bootstrap", "100", "--n", "3000"]
    assert main(["weaning", "--simulate", *base, "--out", str(tmp_path / "a")]) == 0
    assert len(titles) == 2 and all("simulated" in t for t in titles)
    titles.clear()
    csv_path = tmp_path / "c.csv"
    write_csv(simulated_cohort(MODEL_KINDS["weaning"], 3000, 4), csv_path)
    assert main(["weaning", "--data", str(csv_path), "--bootstrap", "100",
                 "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    assert len(titles) == 2 and not any("simulated" in t for t in titles)
    assert all("local cohort" in t for t in titles)


def test_a_decile_without_events_gets_an_honest_wilson_interval():
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(0)
    p = np.sort(rng.uniform(0.001, 0.3, 500))
    y = (rng.random(500) < p).astype(np.int64)
    y[:50] = 0  # the lowest decile has no events
    bins = metrics.calibration_bins(y, p)
    assert bins[0]["events"] == 0 and bins[0]["observed"] == 0.0
    for b in bins:
        lo, hi = proportion_confint(b["events"], int(b["n"]), alpha=0.05, method="wilson")
        assert b["observed_ci95"] == pytest.approx([lo, hi], abs=1e-12)
    below, above = plots.calibration_errors(bins)
    assert below[0] == 0.0 and above[0] > 0.05  # 0/50: Wilson upper bound 0.071, not zero width
