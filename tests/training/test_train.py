"""The command's output: a version directory the service's own loader accepts."""

from __future__ import annotations

import json
import math

import joblib
import numpy as np
import pytest

from service.core.kinds import MODEL_KINDS
from service.core.manifest import parse_manifest
from service.core.registry import Registry, load_version
from service.training.__main__ import main
from service.training.fit import predict_proba


@pytest.mark.parametrize("kind", ["weaning", "ich"])
def test_manifest_parses_and_the_registry_loads_the_version(small_models, kind):
    vdir = small_models / kind / "1.0.0"
    doc = json.loads((vdir / "manifest.json").read_text())
    manifest = parse_manifest(doc)
    assert [f.name for f in manifest.features] == list(MODEL_KINDS[kind].feature_names)
    assert 5 <= len(manifest.self_tests) <= 8
    loaded = load_version(vdir)
    assert loaded.name == kind and loaded.card is not None
    for key in ("intended_use", "limits", "provenance", "training", "derived_features"):
        assert doc[key]
    assert doc["card"] == "MODEL_CARD.md"
    assert (doc["training"]["source"], doc["training"]["seed"]) == ("simulate", 7)
    for f in doc["features"]:
        low, high = f["derivation_range"]
        assert f["hard_bounds"][0] <= low <= high <= f["hard_bounds"][1]


def test_registry_reports_both_small_models_ready(small_models):
    registry = Registry.load(small_models)
    assert registry.ready, registry.not_ready_reasons()
    assert {s.name for s in registry.statuses} == {"weaning", "ich"}


def test_self_test_probabilities_span_the_risk_range(small_models):
    for kind in ("weaning", "ich"):
        doc = json.loads((small_models / kind / "1.0.0" / "manifest.json").read_text())
        ps = [t["expected_probability"] for t in doc["self_tests"]]
        assert ps == sorted(ps) and ps[-1] - ps[0] > 0.3


def test_weaning_metrics_include_vrr_and_every_subgroup(small_models):
    m = json.loads((small_models / "weaning" / "1.0.0" / "manifest.json").read_text())["metrics"]
    assert m["auc_ci95"][0] < m["auc"] < m["auc_ci95"][1]
    assert 0 < m["vrr_alone"]["auc"] < m["auc"]
    levels = {var: set(table) for var, table in m["subgroups"].items()}
    assert levels == {
        "etiology": {"AMI", "myocarditis", "other"},
        "ecpr": {"yes", "no"},
        "crrt": {"yes", "no"},
    }
    assert all(0.5 < e["auc"] < 1 for t in m["subgroups"].values() for e in t.values())


def test_ich_reports_ors_in_the_published_units(small_models):
    doc = json.loads((small_models / "ich" / "1.0.0" / "manifest.json").read_text())
    ors = {o["feature"]: o for o in doc["metrics"]["odds_ratios"]}
    w = doc["model"]["coefficients_log_odds_per_unit"]
    assert math.isclose(ors["gwr"]["fitted"], math.exp(0.01 * w["gwr"]))
    assert math.isclose(ors["ffp_volume_ml"]["fitted"], math.exp(100 * w["ffp_volume_ml"]))
    assert ors["stroke_history"]["published"] == 4.265
    for o in ors.values():
        lo, hi = o["fitted_ci95"]
        assert lo < o["fitted"] < hi


def test_card_covers_the_tripod_headings_and_the_reference_label(small_models):
    for kind in ("weaning", "ich"):
        vdir = small_models / kind / "1.0.0"
        card = (vdir / "MODEL_CARD.md").read_text()
        for heading in (
            "## Data",
            "## Model",
            "## Performance",
            "## Calibration",
            "## Subgroups",
            "## Published vs simulated",
            "## Limits",
        ):
            assert heading in card, heading
        assert (
            "reference model fitted on simulated data; not for clinical decisions" in card.lower()
        )
        for png in ("roc.png", "calibration.png"):
            assert (vdir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({png})" in card


def test_existing_version_is_not_overwritten_without_force(small_models, capsys):
    vdir = small_models / "ich" / "1.0.0"
    before = (vdir / "manifest.json").read_bytes()
    args = ["ich", "--simulate", "--n", "1000", "--bootstrap", "100", "--out", str(small_models)]
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert (vdir / "manifest.json").read_bytes() == before


def test_two_versions_sit_side_by_side_and_force_replaces(tmp_path):
    base = ["ich", "--simulate", "--n", "1000", "--bootstrap", "100", "--out", str(tmp_path)]
    assert main([*base, "--version", "1.0.0"]) == 0
    assert main([*base, "--version", "1.1.0", "--seed", "8"]) == 0
    assert main([*base, "--version", "1.1.0", "--seed", "9", "--force"]) == 0
    registry = Registry.load(tmp_path)
    assert registry.ready
    assert sorted(s.version for s in registry.statuses) == ["1.0.0", "1.1.0"]
    # A newly trained version is not the default until site-validated or pinned (issue 13.4).
    assert registry.get("ich").version == "1.0.0"
    assert registry.get("ich", "1.1.0").manifest.raw["training"]["seed"] == 9
    assert [p.name for p in tmp_path.iterdir()] == ["ich"]  # no temporary directory left behind


@pytest.mark.parametrize("name", ["weaning", "ich"])
def test_data_on_a_simulated_csv_gives_the_same_model(tmp_path, name):
    csv_path = tmp_path / "cohort.csv"
    sim_out, csv_out = tmp_path / "sim", tmp_path / "csv"
    common = ["--seed", "11", "--bootstrap", "100"]
    assert main([name, "--simulate", "--n", "3000", "--write-csv", str(csv_path),
                 "--out", str(sim_out), *common]) == 0  # fmt: skip
    assert main([name, "--data", str(csv_path), "--out", str(csv_out), *common]) == 0
    sim = load_version(sim_out / name / "1.0.0")
    from_csv = load_version(csv_out / name / "1.0.0")
    assert sim.linear == from_csv.linear
    assert sim.manifest.raw["self_tests"] == from_csv.manifest.raw["self_tests"]
    assert sim.manifest.raw["metrics"] == from_csv.manifest.raw["metrics"]
    assert from_csv.manifest.raw["training"]["source"] == "csv"
    a = joblib.load(sim_out / name / "1.0.0" / "model.joblib")
    b = joblib.load(csv_out / name / "1.0.0" / "model.joblib")
    x = np.array(
        [[t["features"][n] for n in sim.kind.feature_names] for t in sim.manifest.raw["self_tests"]]
    )
    assert np.array_equal(predict_proba(a, x), predict_proba(b, x))
