"""Metrics: a batch is recorded as the same counts and histogram as its patients one by one."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.core.drift import FEATURE_BUCKETS, PROBABILITY_BUCKETS
from service.telemetry import create_metrics


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


def test_input_batches_count_exactly_what_one_by_one_would_in_each_features_buckets() -> None:
    rnd = random.Random(9)
    names = ("gwr", "stroke_history", "ffp_volume_ml", "min_platelets")
    columns = []
    for name in names:
        edges = FEATURE_BUCKETS[name]
        # Each edge, values just above it, and random values across and beyond the range.
        column = [*edges, *(e + 1e-9 for e in edges)]
        column += [rnd.uniform(edges[0] - 1, edges[-1] * 1.5) for _ in range(300)]
        columns.append(column[:300])
    x = np.array(columns).T
    one_by_one, batch = create_metrics(CollectorRegistry()), create_metrics(CollectorRegistry())
    for row in x.tolist():
        one_by_one.observe_input("ich", "1.0.0", list(zip(names, row, strict=True)))
    batch.observe_inputs("ich", "1.0.0", names, x)
    expected, got = samples(one_by_one.registry), samples(batch.registry)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    # Each feature has its own clinical bucket bounds (plus +Inf), not one shared set.
    for name in names:
        les = [
            float(dict(labels)["le"])
            for (sample, labels) in got
            if sample == "ecmo_input_feature_bucket" and dict(labels)["feature"] == name
        ]
        assert sorted(les) == [*FEATURE_BUCKETS[name], math.inf]
