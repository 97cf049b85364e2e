"""Fixed, clinically meaningful buckets per input feature (canonical units) and a cohort's
distribution over them.

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

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FEATURE_BUCKETS: dict[str, tuple[float, ...]] = {
    # weaning. VRR: < 0 = more support at 24 h than at start; 1 = off all vasoactives.
    "vrr": (-0.5, 0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99),
    # APACHE II: the usual 5-point strata (0-4, 5-9, ... 30-34), then 35-40, 41-50, > 50.
    "apache_ii": (4.0, 9.0, 14.0, 19.0, 24.0, 29.0, 34.0, 40.0, 50.0),
    # VIS (Gaies 2010 groups < 10, 10-14, 15-19, 20-24, >= 25), with the high range split up.
    "vis_24h": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 40.0, 60.0, 100.0, 250.0),
    # Lactate, mmol/L: <= 2 normal, > 4 the shock threshold, > 10 severe.
    "lactate_24h": (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0),
    # ich. GWR: ~1.3 normal; < 1.2 suggests hypoxic-ischaemic injury.
    "gwr": (1.0, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5),
    # Stroke history: le=0 counts patients without one.
    "stroke_history": (0.0, 1.0),
    # FFP mL: none, then about one unit (~200-250 mL) steps, then massive-transfusion volumes.
    "ffp_volume_ml": (0.0, 250.0, 500.0, 750.0, 1000.0, 1500.0, 2500.0, 4000.0, 8000.0),
    # Platelets 10*9/L: < 20 severe, < 50 bleeding threshold, < 150 thrombocytopenia, > 450 high.
    "min_platelets": (20.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 450.0),
}

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
    feature_names: Sequence[str], x: FloatArray, probabilities: FloatArray
) -> dict[str, Any]:
    """The manifest's `reference_distribution` for a cohort: x [n, features] in canonical units
    (columns in feature_names order) and the model's predicted probabilities for the same rows."""
    return {
        "cohort": "training split of the derivation cohort",
        "n": int(x.shape[0]),
        "features": {
            name: {
                "le": list(FEATURE_BUCKETS[name]),
                "cumulative_fraction": cumulative_fractions(x[:, j], FEATURE_BUCKETS[name]),
            }
            for j, name in enumerate(feature_names)
        },
        "probability": {
            "le": list(PROBABILITY_BUCKETS),
            "cumulative_fraction": cumulative_fractions(probabilities, PROBABILITY_BUCKETS),
        },
    }
