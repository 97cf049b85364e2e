"""Metrics: a batch is recorded as the same counts and histogram as its patients one by one."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.core.drift import PROBABILITY_BUCKETS
from service.core.kinds import ICH
from service.core.registry import load_version
from service.core.scoring import Scoring
from service.telemetry import create_metrics
from tests.factories import write_model

FEATURES = {f.name: f.drift_buckets for f in ICH.features}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_batch_observation_counts_exactly_what_one_by_one_would() -> None:
    rnd = random.Random(5)
    # Every bucket edge itself, values just around them, and random ones.
    probabilities = [
        *PROBABILITY_BUCKETS,
        *(b + 1e-12 for b in PROBABILITY_BUCKETS[:-1]),
        0.0,
        *(rnd.random() for _ in range(500)),
    ]
    bands = [rnd.choice(["low", "intermediate", "high"]) for _ in probabilities]
    one_by_one, batch = create_metrics(CollectorRegistry()), create_metrics(CollectorRegistry())
    for band, p in zip(bands, probabilities, strict=True):
        one_by_one.observe_prediction("ich", "1.0.0", band, p)
    batch.observe_predictions("ich", "1.0.0", bands, probabilities)
    expected, got = samples(one_by_one.registry), samples(batch.registry)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_a_failing_metrics_store_is_logged_once_and_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Under gunicorn a full multiprocess directory makes every metric update raise ENOSPC
    (service/metrics_files.py); the request that caused the update must still be answered."""
    monkeypatch.setattr("service.telemetry._failed", set())  # as in a fresh worker
    metrics = create_metrics(CollectorRegistry())

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics.requests, "labels", full)
    monkeypatch.setattr(metrics.predictions, "labels", full)
    monkeypatch.setattr(metrics.validation_errors, "labels", full)
    monkeypatch.setattr(metrics.cds_feedback, "labels", full)
    with caplog.at_level("ERROR", logger="ecmo.metrics"):
        for _ in range(3):
            metrics.observe_request("/v1/models/<name>/predict", "POST", 200, 0.001)
            metrics.observe_prediction("weaning", "1.0.0", "low", 0.2)
            metrics.observe_predictions("weaning", "1.0.0", ["low"], [0.2])
            metrics.observe_validation_error("weaning", "inputs.apache_ii")
            metrics.observe_feedback("ecmo-weaning", "accepted")
    failures = [r for r in caplog.records if r.getMessage().startswith("metrics not recorded")]
    assert len(failures) == 1  # once per process and kind of failure, not once per request


def _bucket_of(metrics_registry: CollectorRegistry, seconds: float) -> str:
    """The smallest `le` whose cumulative count includes one observation of `seconds`."""
    metrics = create_metrics(metrics_registry)
    metrics.observe_request("/v1/models/<name>/predict", "POST", 200, seconds)
    buckets = [
        (float(s.labels["le"]), s.value)
        for family in text_string_to_metric_families(generate_latest(metrics_registry).decode())
        for s in family.samples
        if s.name == "ecmo_http_request_duration_seconds_bucket"
    ]
    return str(min(le for le, count in buckets if count == 1))


def test_latency_buckets_resolve_sub_millisecond_predictions() -> None:
    # In-process predictions take ~0.1 ms; a 1 ms first bucket put 99.5 % of them in one bucket.
    assert _bucket_of(CollectorRegistry(), 0.0001) != _bucket_of(CollectorRegistry(), 0.0005)
    assert _bucket_of(CollectorRegistry(), 0.0005) != _bucket_of(CollectorRegistry(), 0.002)
    # Batches of 1,000 take seconds on a slow node: still resolved, not all in +Inf.
    assert _bucket_of(CollectorRegistry(), 2.0) != _bucket_of(CollectorRegistry(), 8.0)


def test_a_scored_batch_counts_exactly_what_its_patients_one_by_one_would(tmp_path: Path) -> None:
    """observe_batch (columns plus the rows scored one by one) against observe_patient for each
    patient: the same bands, probabilities and per-feature input buckets."""
    model = load_version(write_model(tmp_path, "ich"))
    rnd = random.Random(9)
    patients = []
    for i in range(300):
        patient: dict[str, Any] = {
            "gwr": rnd.choice([*FEATURES["gwr"], rnd.uniform(0.95, 1.6)]),
            "stroke_history": rnd.random() < 0.2,
            "ffp_volume": {"value": rnd.choice([0, 250, 400, 2500, 9000]), "unit": "mL"},
            "min_platelets": {"value": rnd.choice([20, 50, 80.5, 300, 700]), "unit": "10*9/L"},
        }
        if i % 7 == 0:  # the per-patient path (GWR from HU)
            del patient["gwr"]
            patient |= {"grey_matter_hu": 36.0, "white_matter_hu": 30.0}
        patients.append(patient)
    scoring = Scoring()
    batch = scoring.patients(model, patients)
    assert not batch.errors and batch.predictions and batch.columns is not None
    one_by_one, together = create_metrics(CollectorRegistry()), create_metrics(CollectorRegistry())
    for patient in patients:
        one_by_one.observe_patient(scoring.one(model, patient))
    together.observe_batch(model, batch)
    expected, got = samples(one_by_one.registry), samples(together.registry)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    # Each feature has its own clinical bucket bounds (plus +Inf), not one shared set.
    for name, bounds in FEATURES.items():
        les = [
            float(dict(labels)["le"])
            for (sample, labels) in got
            if sample == "ecmo_input_feature_bucket" and dict(labels)["feature"] == name
        ]
        assert sorted(les) == [*bounds, math.inf]
    assert sum(v for (n, _), v in got.items() if n == "ecmo_input_feature_count") == 4 * 300
