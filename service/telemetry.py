"""Prometheus metrics: created per app against an injected registry; multiprocess-aware.

Label values are bounded: route templates (never raw paths), the HTTP methods in KNOWN_METHODS
(others fold into "<other>"), model names, versions and feature names from the manifests, risk
band names, and field paths from our own schemas (unknown caller-chosen keys are folded into
"<unknown>"). No label ever carries a patient value: inputs are only counted into fixed buckets.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.utils import floatToGoString

from service.core.drift import PROBABILITY_BUCKETS, bucket_counts
from service.core.predictor import Prediction
from service.core.registry import LoadedModel, ModelStatus
from service.core.scoring import Batch

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


# In-process predictions take ~0.1 ms (median), a single prediction through gunicorn ~1 ms, a
# 1,000-patient batch ~10 ms, and a slow node or a large CDS prefetch seconds: buckets from 50 us to
# 10 s, about three per decade, so a quantile estimate is never off by more than a bucket's width.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00015,
    0.0002,
    0.0003,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Methods a route can answer; anything else a caller sends is counted as OTHER_METHOD (a
# caller-chosen label value would let anyone create series without authentication).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "<other>"
UNMATCHED_ROUTE = "<unmatched>"


class FeatureHistogram(Histogram):
    """A Histogram whose children each have their own buckets: an input feature's clinically
    meaningful bounds (FeatureSpec.drift_buckets) in one metric family. prometheus_client gives a
    Histogram's children the parent's buckets, creating each through the constructor with its
    label values and the parent's keyword arguments; here those carry a table from label values
    to buckets, which labels_with_buckets fills before asking for a child."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: CollectorRegistry | None = REGISTRY,
        _labelvalues: Sequence[str] | None = None,
        buckets: Sequence[float] = (0.0,),
        bucket_table: dict[tuple[str, ...], tuple[float, ...]] | None = None,
    ) -> None:
        table = {} if bucket_table is None else bucket_table
        if _labelvalues:
            buckets = table[tuple(_labelvalues)]
        super().__init__(
            name,
            documentation,
            labelnames,
            namespace,
            subsystem,
            unit,
            registry,
            _labelvalues,
            buckets,
        )
        self._kwargs["bucket_table"] = table

    def labels_with_buckets(self, buckets: Sequence[float], *values: str) -> Any:
        """The child for these label values (in labelnames order), created with `buckets`."""
        self._kwargs["bucket_table"].setdefault(values, tuple(buckets))
        return self.labels(*values)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    predictions: Counter
    probability: Histogram
    validation_errors: Counter
    model_info: Gauge
    model_ready: Gauge
    cds_feedback: Counter
    inputs: FeatureHistogram
    input_reference: Gauge
    probability_reference: Gauge
    fhir_fetch: Counter
    fhir_fetch_latency: Histogram
    _info_pid: int = field(default=0)
    # labels() validates and looks up its arguments on every call; the labelled children for a
    # (model, version, band) are the same objects every time, and a batch observes 1,000 of them.
    _prediction_children: dict[tuple[str, str, str], tuple[Any, Any]] = field(default_factory=dict)
    _request_children: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)
    _input_children: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    @never_fails
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request: counted by route template, method and status; its time histogrammed.

        `route` must be a route template or UNMATCHED_ROUTE, never a raw path; a method outside
        KNOWN_METHODS is counted as OTHER_METHOD."""
        key = (route, method, status)
        pair = self._request_children.get(key)
        if pair is None:
            if method not in KNOWN_METHODS:
                # Folded before the cache too, so made-up methods cannot grow the dict either.
                method = OTHER_METHOD
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
        _observe_many(histogram, np.asarray(probabilities, dtype=np.float64))

    @never_fails
    def observe_validation_error(self, model: str, field: str, count: int = 1) -> None:
        self.validation_errors.labels(model=model, field=field).inc(count)

    @never_fails
    def observe_feedback(self, service: str, outcome: str) -> None:
        self.cds_feedback.labels(service=service, outcome=outcome).inc()

    @never_fails
    def observe_patient(self, p: Prediction) -> None:
        """One patient scored on the per-patient path: its band, probability and inputs."""
        m = p.model
        self.observe_prediction(m.name, m.version, p.band.name, p.probability)
        for j, value in enumerate(p.given):
            self._input_child(m, j).observe(value)

    @never_fails
    def observe_batch(self, model: LoadedModel, batch: Batch) -> None:
        """A batch the scoring layer (core.scoring) scored with no refused row: every patient's
        band, probability and canonical inputs, from its column scores and the rows it scored one
        by one. One update per band, bucket and feature, never one per patient."""
        bands = model.manifest.risk_bands
        names = model.kind.feature_names
        cols = batch.columns
        if cols is None:
            probability = np.zeros(batch.n)
            band = np.zeros(batch.n, dtype=np.int64)
            x = np.zeros((batch.n, len(names)))
        elif batch.predictions:
            probability, band, x = cols.probability.copy(), cols.band.copy(), cols.features.copy()
        else:
            probability, band, x = cols.probability, cols.band, cols.features
        for i, p in batch.predictions.items():
            probability[i] = p.probability
            band[i] = bands.index(p.band)
            x[i] = p.given
        counts = np.bincount(band, minlength=len(bands)).tolist()
        for b, count in zip(bands, counts, strict=False):
            if count:
                self._children(model.name, model.version, b.name)[0].inc(count)
        histogram = self.probability.labels(model=model.name, version=model.version)
        _observe_many(histogram, probability)
        self.observe_inputs(model, x)

    def _input_child(self, model: LoadedModel, j: int) -> Any:
        spec = model.kind.features[j]
        key = (model.name, model.version, spec.name)
        child = self._input_children.get(key)
        if child is None:
            child = self._input_children[key] = self.inputs.labels_with_buckets(
                spec.drift_buckets, *key
            )
        return child

    @never_fails
    def observe_inputs(self, model: LoadedModel, x: npt.NDArray[np.float64]) -> None:
        """Scored patients' features in canonical units, x [patients, features] in the kind's
        feature order: counted into each feature's fixed buckets (FeatureSpec.drift_buckets),
        one update per bucket and feature, never per patient. Only counts leave: no value
        becomes a label."""
        if x.shape[0] == 0:
            return
        for j in range(x.shape[1]):
            _observe_many(self._input_child(model, j), x[:, j])

    @never_fails
    def observe_fhir_fetch(self, outcome: str, seconds: float) -> None:
        """One attempt to fetch a prefetch key from an EHR's FHIR server (fhir_fetch.FETCH_OUTCOMES)."""
        self.fhir_fetch.labels(outcome=outcome).inc()
        self.fhir_fetch_latency.labels(outcome=outcome).observe(seconds)

    @never_fails
    def mark_models(self, statuses: Sequence[ModelStatus]) -> None:
        """Set the per-model gauges once per process (gauges are per live process in multiprocess
        mode): model_info for each served model, model_ready for each model found (1 served, 0
        refused), and the drift references of the served models' derivation cohorts."""
        pid = os.getpid()
        if self._info_pid == pid:
            return
        self._info_pid = pid
        for status in statuses:
            self.model_ready.labels(model=status.name, version=status.version).set(
                1 if status.ready else 0
            )
            m = status.model
            if m is None:
                continue
            self.model_info.labels(name=m.name, version=m.version, sha256=m.sha256).set(1)
            reference = m.manifest.reference
            if reference is None:
                continue
            for feature, dist in reference.features.items():
                for le, fraction in zip(dist.le, dist.cumulative_fraction, strict=True):
                    self.input_reference.labels(
                        model=m.name, version=m.version, feature=feature, le=_le(le)
                    ).set(fraction)
            dist = reference.probability
            for le, fraction in zip(dist.le, dist.cumulative_fraction, strict=True):
                self.probability_reference.labels(model=m.name, version=m.version, le=_le(le)).set(
                    fraction
                )


def _le(bound: float) -> str:
    """A bound as the histograms write their `le` label, so a rule can match the two."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def _observe_many(histogram: Any, values: npt.NDArray[np.float64]) -> None:
    """histogram.observe(v) for every v, as one update per bucket: bucket_counts puts a value in
    the first bucket whose bound is >= it, as Histogram.observe does."""
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    if buckets is None or total is None or bounds is None:
        # prometheus_client's internals moved: fall back to the public API, one by one.
        for v in values.tolist():
            histogram.observe(v)
        return
    # The last bound is +Inf: bucket_counts' overflow count is always 0 then.
    counts = bucket_counts(values, bounds[:-1])
    for index in np.flatnonzero(counts).tolist():
        buckets[index].inc(int(counts[index]))
    total.inc(math.fsum(values.tolist()))


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
        model_ready=Gauge(
            "ecmo_model_ready",
            "1 when the model version was verified and is served, 0 when it was refused.",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="livemin",
        ),
        inputs=FeatureHistogram(
            "ecmo_input_feature",
            "Scored patients' input features in canonical units, in fixed clinical buckets per "
            "feature (FeatureSpec.drift_buckets), for watching input drift.",
            ["model", "version", "feature"],
            registry=registry,
        ),
        input_reference=Gauge(
            "ecmo_input_reference_fraction",
            "Derivation cohort's cumulative fraction of each feature <= le (from the manifest).",
            ["model", "version", "feature", "le"],
            registry=registry,
            multiprocess_mode="livemax",
        ),
        probability_reference=Gauge(
            "ecmo_predicted_probability_reference_fraction",
            "Derivation cohort's cumulative fraction of predicted probabilities <= le (manifest).",
            ["model", "version", "le"],
            registry=registry,
            multiprocess_mode="livemax",
        ),
        cds_feedback=Counter(
            "ecmo_cds_feedback",
            "CDS Hooks card feedback received, by service id and outcome.",
            ["service", "outcome"],
            registry=registry,
        ),
        fhir_fetch=Counter(
            "ecmo_fhir_fetch",
            "Prefetch keys the service tried to fetch from an EHR's FHIR server, by outcome "
            "(ok, not_allowed, timeout, deadline, unreachable, unauthorized, forbidden, "
            "client_error, server_error, not_fhir, too_large).",
            ["outcome"],
            registry=registry,
        ),
        fhir_fetch_latency=Histogram(
            "ecmo_fhir_fetch_duration_seconds",
            "Time spent fetching one prefetch key from an EHR's FHIR server (all its pages), by "
            "outcome. (Labelled, so that no value file is opened at import: in multiprocess mode "
            "an unlabelled metric writes to PROMETHEUS_MULTIPROC_DIR as soon as it is created.)",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
    )
