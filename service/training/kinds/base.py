"""What the training command knows about one model kind, as data: the recipe, the CSV mapping, the
card text and the published figures. One TrainingKind per module in this package.

The core's ModelKind (features, bounds, units) stays in service.core; this is the offline half:
everything the training and validation commands need that the service never does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.kinds.base import ModelKind

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Citation:
    """A complete reference: who, what, where, and the identifier to find it by."""

    text: str
    doi: str | None = None
    url: str | None = None

    def render(self) -> str:
        parts = [self.text]
        if self.doi:
            parts.append(f"doi:{self.doi}")
        if self.url:
            parts.append(self.url)
        return ". ".join(p.rstrip(".") for p in parts) + "."


@dataclass(frozen=True)
class Predictor:
    """A CSV column / API input: what exactly is measured, and when (the measurement window)."""

    name: str
    definition: str
    window: str


@dataclass(frozen=True)
class PublishedOR:
    feature: str
    per: str
    """The unit the published OR is per (inferred from the CI widths, see docs/CLINICAL.md)."""
    per_value: float
    """Multiply the per-canonical-unit coefficient by this to get the published unit."""
    odds_ratio: float
    ci95: tuple[float, float]


@dataclass(frozen=True)
class RiskBandSpec:
    name: str
    lower: float
    upper: float
    cds_indicator: str
    description: str
    source: str
    """Where the lower cut-off comes from (a design choice, a published threshold, ...)."""

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lower": self.lower,
            "upper": self.upper,
            "cds_indicator": self.cds_indicator,
            "description": self.description,
            "cutoff_source": self.source,
        }


@dataclass(frozen=True)
class Subgroup:
    """An optional CSV column the subgroup tables are split by."""

    column: str
    levels: tuple[tuple[str, Any], ...]
    """(label, value) pairs; values are the parsed cell values (str for categories, 0/1 flags)."""
    categories: tuple[str, ...] = ()
    """For a categorical column, the accepted values; empty for a yes/no flag."""

    @property
    def boolean(self) -> bool:
        return not self.categories


@dataclass(frozen=True)
class Simulated:
    """A recipe's draw: the CSV columns in canonical units, the outcome and the subgroup columns."""

    columns: dict[str, FloatArray]
    outcome: IntArray
    subgroups: dict[str, npt.NDArray[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparator:
    """A single predictor whose own AUC is reported beside the model's (the paper reports it)."""

    key: str
    """metrics key, e.g. "vrr_alone" """
    label: str
    feature: str


@dataclass(frozen=True)
class TrainingKind:
    model: ModelKind
    recipe: Callable[[int, np.random.Generator, float], Simulated]
    """(n, rng, shift) -> a simulated cohort, exactly as docs/CLINICAL.md's recipe says; shift
    (log-odds, 0 for the reference cohorts) moves the baseline risk of a simulated site."""
    api_inputs: Callable[[Mapping[str, float]], dict[str, Any]]
    """One CSV row (canonical units) in the shape the HTTP API accepts."""
    integer_columns: frozenset[str]
    boolean_columns: frozenset[str]
    outcome_definition: str
    predictors: tuple[Predictor, ...]
    """One per CSV column: definition and measurement window."""
    derived_features: tuple[Predictor, ...]
    risk_bands: tuple[RiskBandSpec, ...]
    intended_use: str
    limits_simulated: str
    sources: tuple[Citation, ...]
    """The publication(s) the model reproduces."""
    published_figures: dict[str, Any]
    inferred: tuple[str, ...]
    decision_thresholds: tuple[float, float]
    """The range of threshold probabilities a decision curve is drawn over."""
    subgroups: tuple[Subgroup, ...] = ()
    comparators: tuple[Comparator, ...] = ()
    published_ors: tuple[PublishedOR, ...] = ()

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def subgroup_columns(self) -> tuple[str, ...]:
        return tuple(s.column for s in self.subgroups)
