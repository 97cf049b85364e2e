"""Prometheus metrics: created per app against an injected registry; multiprocess-aware.

Label values are bounded: route templates (never raw paths), model names and versions from the
manifests, risk band names, and field paths from our own schemas (unknown caller-chosen keys are
folded into "<unknown>"). No label ever carries a patient value.
"""

from __future__ import annotations

import bisect
import collections
import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("ecmo.metrics")
F = TypeVar("F", bound=Callable[..., None])
_failed: set[tuple[int, str]] = set()


def never_fails(method: F) -> F:
    """A metric update that fails (under gunicorn: the multiprocess directory is full, see
    service/metrics_files.py) is dropped and logged once per process, never raised: a prediction
    is answered whether or not its metrics could be written (issue 19.3)."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:  # any failure of the metrics library, by design
            key = (os.getpid(), type(exc).__name__)
            if key not in _failed:
                _failed.add(key)
                log.error(
                    "metrics not recorded: the metrics store failed (later failures of this kind "
                    "in this process are not logged)",
                    extra={"metric_update": method.__name__, "error": repr(exc)},
                )

    return guarded  # type: ignore[return-value]


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (1.0,)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    predictions: Counter
    probability: Histogram
    validation_errors: Counter
    model_info: Gauge
    cds_feedback: Counter
    _info_pid: int = field(default=0)
    # labels() validates and looks up its arguments on every call; the labelled children for a
    # (model, version, band) are the same objects every time, and a batch observes 1,000 of them.
    _prediction_children: dict[tuple[str, str, str], tuple[Any, Any]] = field(default_factory=dict)
    _request_children: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

    @never_fails
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request: counted by route template, method and status; its time histogrammed."""
        key = (route, method, status)
        pair = self._request_children.get(key)
        if pair is None:
            pair = self._request_children[key] = (
                self.requests.labels(route=route, method=method, status=str(status)),
                self.latency.labels(route=route, method=method),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def _children(self, model: str, version: str, band: str) -> tuple[Any, Any]:
        key = (model, version, band)
        pair = self._prediction_children.get(key)
        if pair is None:
            pair = self._prediction_children[key] = (
                self.predictions.labels(model=model, version=version, band=band),
                self.probability.labels(model=model, version=version),
            )
        return pair

    @never_fails
    def observe_prediction(self, model: str, version: str, band: str, probability: float) -> None:
        """One scored patient: counted by model, version and band; its probability histogrammed."""
        counter, histogram = self._children(model, version, band)
        counter.inc()
        histogram.observe(probability)

    @never_fails
    def observe_predictions(
        self, model: str, version: str, bands: Sequence[str], probabilities: Sequence[float]
    ) -> None:
        """A batch of scored patients: the same counts as observe_prediction for each, but one
        update per band and per histogram bucket instead of one per patient (in multiprocess mode
        each update is a write to a shared file; a 1,000-patient batch spent ~30 % of its time here).
        """
        for band, count in collections.Counter(bands).items():
            self._children(model, version, band)[0].inc(count)
        histogram = self.probability.labels(model=model, version=version)
        buckets = getattr(histogram, "_buckets", None)
        total = getattr(histogram, "_sum", None)
        bounds = getattr(histogram, "_upper_bounds", None)
        if buckets is None or total is None or bounds is None:
            # prometheus_client's internals moved: fall back to the public API, one by one.
            for p in probabilities:
                histogram.observe(p)
            return
        # Histogram.observe counts an amount in the first bucket whose bound is >= it.
        per_bucket = collections.Counter(bisect.bisect_left(bounds, p) for p in probabilities)
        for index, count in per_bucket.items():
            buckets[index].inc(count)
        total.inc(math.fsum(probabilities))

    @never_fails
    def observe_validation_error(self, model: str, field: str, count: int = 1) -> None:
        self.validation_errors.labels(model=model, field=field).inc(count)

    @never_fails
    def observe_feedback(self, service: str, outcome: str) -> None:
        self.cds_feedback.labels(service=service, outcome=outcome).inc()

    @never_fails
    def mark_models(self, models: list[tuple[str, str, str]]) -> None:
        """Set model_info once per process (the gauge is per live process in multiprocess mode)."""
        pid = os.getpid()
        if self._info_pid == pid:
            return
        self._info_pid = pid
        for name, version, sha in models:
            self.model_info.labels(name=name, version=version, sha256=sha).set(1)


def create_metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(
        registry=registry,
        requests=Counter(
            "ecmo_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "ecmo_http_request_duration_seconds",
            "Time spent answering a request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        predictions=Counter(
            "ecmo_predictions",
            "Patients scored, by model, version and risk band (a batch counts each patient).",
            ["model", "version", "band"],
            registry=registry,
        ),
        probability=Histogram(
            "ecmo_predicted_probability",
            "Predicted probabilities per model and version, for watching drift.",
            ["model", "version"],
            buckets=PROBABILITY_BUCKETS,
            registry=registry,
        ),
        validation_errors=Counter(
            "ecmo_validation_errors",
            "Rejected input fields by model and field path (batch indices removed).",
            ["model", "field"],
            registry=registry,
        ),
        model_info=Gauge(
            "ecmo_model_info",
            "Models served by this process: 1 per name, version and artifact sha256.",
            ["name", "version", "sha256"],
            registry=registry,
            multiprocess_mode="livemax",
        ),
        cds_feedback=Counter(
            "ecmo_cds_feedback",
            "CDS Hooks card feedback received, by service id and outcome.",
            ["service", "outcome"],
            registry=registry,
        ),
    )
