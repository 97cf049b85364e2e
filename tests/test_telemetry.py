"""Metrics: a batch is recorded as the same counts and histogram as its patients one by one."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.telemetry import PROBABILITY_BUCKETS, create_metrics


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
