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
