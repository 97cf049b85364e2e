"""The two shipped reference models: what they must show, and that the command reproduces them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.core.drift import PROBABILITY_BUCKETS
from service.core.kinds import MODEL_KINDS
from service.core.registry import Registry, load_version
from service.training.cohort import split_indices, streams
from service.training.fit import fit, predict_proba
from service.training.train import DEFAULT_TEST_FRACTION, simulated_cohort

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = {"weaning": "1.0.0", "ich": "1.0.0"}


def _manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((MODELS / name / SHIPPED[name] / "manifest.json").read_text())
    return doc


def test_the_repository_registry_serves_both_reference_models():
    registry = Registry.load(MODELS)
    for name, version in SHIPPED.items():
        status = next(s for s in registry.statuses if (s.name, s.version) == (name, version))
        assert status.ready, status.reason
        assert registry.get(name, version).card is not None


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_is_the_committed_seed_and_size_and_labelled_reference(name):
    doc = _manifest(name)
    t = doc["training"]
    assert (t["source"], t["seed"], t["n"]) == ("simulate", 7, 20_000)
    assert (
        "reference model fitted on simulated data; not for clinical decisions"
        in doc["limits"].lower()
    )


def test_weaning_reference_shows_the_published_performance():
    m = _manifest("weaning")["metrics"]
    assert m["evaluated_on"] == "held-out split"
    assert 0.54 <= m["prevalence"] <= 0.58
    assert 0.80 <= m["auc"] <= 0.84
    assert 0.76 <= m["vrr_alone"]["auc"] <= 0.80
    assert 0.9 <= m["calibration_slope"] <= 1.1
    aucs = [e["auc"] for table in m["subgroups"].values() for e in table.values()]
    assert len(aucs) == 7 and all(isinstance(a, float) and 0.5 < a < 1 for a in aucs)


def test_ich_reference_shows_the_published_performance_and_ors():
    m = _manifest("ich")["metrics"]
    assert 0.08 <= m["prevalence"] <= 0.12
    assert 0.82 <= m["auc"] <= 0.87
    assert 0.9 <= m["calibration_slope"] <= 1.1
    assert len(m["odds_ratios"]) == 4
    for o in m["odds_ratios"]:
        lo, hi = o["published_ci95"]
        assert lo <= o["fitted"] <= hi, o["feature"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_retraining_with_the_committed_seed_reproduces_the_self_tests(name):
    doc = _manifest(name)
    kind = MODEL_KINDS[doc["kind"]]
    seed, n = doc["training"]["seed"], doc["training"]["n"]
    assert doc["training"]["split"]["test_fraction"] == DEFAULT_TEST_FRACTION
    cohort = simulated_cohort(kind, n, seed)
    _, split_rng, _ = streams(seed)
    train_idx, _ = split_indices(cohort.outcome, DEFAULT_TEST_FRACTION, split_rng)
    model = fit(cohort.features[train_idx], cohort.outcome[train_idx], kind.feature_names)
    tests = doc["self_tests"]
    x = [[t["features"][f] for f in kind.feature_names] for t in tests]
    got = predict_proba(model, np.array(x))
    for t, p in zip(tests, got, strict=True):
        assert abs(p - t["expected_probability"]) <= 1e-9
    # and the committed artifact itself agrees with its own manifest
    assert load_version(MODELS / name / SHIPPED[name]).version == SHIPPED[name]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_training_command_rebuilds_the_committed_model(name, tmp_path):
    """The command itself (console script), with the committed seed and size: the same
    self-test probabilities to 1e-9 (the bootstrap only sizes confidence intervals)."""
    committed = _manifest(name)
    seed, n = committed["training"]["seed"], committed["training"]["n"]
    argv = [str(Path(sys.executable).parent / "ecmo-train"), "--simulate", name]
    argv += ["--seed", str(seed), "--n", str(n), "--out", str(tmp_path), "--bootstrap", "100"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    rebuilt = json.loads((tmp_path / name / SHIPPED[name] / "manifest.json").read_text())
    assert [t["features"] for t in rebuilt["self_tests"]] == [
        t["features"] for t in committed["self_tests"]
    ]
    for new, old in zip(rebuilt["self_tests"], committed["self_tests"], strict=True):
        assert abs(new["expected_probability"] - old["expected_probability"]) <= 1e-9
    # The drift alerts' reference is the derivation cohort the command draws, bucket by bucket.
    assert rebuilt["reference_distribution"] == committed["reference_distribution"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_committed_drift_reference_uses_the_buckets_the_service_histograms(name):
    reference = load_version(MODELS / name / SHIPPED[name]).manifest.reference
    assert reference is not None
    assert set(reference.features) == set(MODEL_KINDS[name].feature_names)
    buckets = {f.name: f.drift_buckets for f in MODEL_KINDS[name].features}
    for feature, distribution in reference.features.items():
        assert distribution.le == buckets[feature]
        assert distribution.cumulative_fraction[-1] <= 1.0
    assert reference.probability.le == PROBABILITY_BUCKETS
    # Not degenerate: the cohort spreads over the buckets.
    assert 0 < reference.probability.cumulative_fraction[0] < 1


def test_the_training_command_runs_as_a_module() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "service.training", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and "--simulate" in run.stdout and "--data" in run.stdout
