"""A cohort's distribution over fixed, clinically meaningful buckets per input feature
(canonical units; each kind's FeatureSpec.drift_buckets) and over predicted probabilities.

Training records the derivation cohort's cumulative fraction at each bucket bound in the manifest
(`reference_distribution`); the service histograms live inputs and probabilities over the same
bounds and exports the reference next to them, so an alert rule can compare the two per bucket
(the largest gap between the cumulative distributions: a binned Kolmogorov-Smirnov distance).
Bounds are upper bounds, inclusive, as Prometheus' `le`; +Inf is implicit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.kinds.base import FeatureSpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBABILITY_BUCKETS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (1.0,)


def bucket_counts(values: FloatArray, bounds: Sequence[float]) -> IntArray:
    """How many values fall in each bucket, not cumulative: len(bounds) + 1 counts, the last for
    +Inf. A value is in the first bucket whose bound is >= it (what Histogram.observe does)."""
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    return np.bincount(index, minlength=len(bounds) + 1).astype(np.int64)


def cumulative_fractions(values: FloatArray, bounds: Sequence[float]) -> list[float]:
    """The fraction of values <= each bound (rounded to 6 digits)."""
    counts = np.cumsum(bucket_counts(values, bounds))[: len(bounds)]
    return [round(float(c) / len(values), 6) for c in counts]


def reference_distribution(
    features: Sequence[FeatureSpec], x: FloatArray, probabilities: FloatArray
) -> dict[str, Any]:
    """The manifest's `reference_distribution` for a cohort: x [n, features] in canonical units
    (columns in `features` order) and the model's predicted probabilities for the same rows."""
    return {
        "cohort": "training split of the derivation cohort",
        "n": int(x.shape[0]),
        "features": {
            f.name: {
                "le": list(f.drift_buckets),
                "cumulative_fraction": cumulative_fractions(x[:, j], f.drift_buckets),
            }
            for j, f in enumerate(features)
        },
        "probability": {
            "le": list(PROBABILITY_BUCKETS),
            "cumulative_fraction": cumulative_fractions(probabilities, PROBABILITY_BUCKETS),
        },
    }
