"""predict(model, resolved inputs) -> Prediction with exact additive log-odds contributions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from service.core.inputs import InputWarning, Resolved
from service.core.linear import bounded_expit
from service.core.manifest import RiskBand
from service.core.registry import LoadedModel


class Contribution(NamedTuple):
    """One feature's share of the log-odds. Immutable like the other core types; a NamedTuple
    because a prediction builds several and a frozen dataclass takes ~2.5x as long to build."""

    feature: str
    label: str
    value: float
    unit: str
    log_odds: float

    @property
    def direction(self) -> str:
        return direction_of(self.log_odds)


def direction_of(log_odds: float) -> str:
    """How a contribution moves the probability, in a word."""
    if log_odds > 0:
        return "raises"
    if log_odds < 0:
        return "lowers"
    return "neutral"


class Prediction(NamedTuple):
    """Immutable, as the other core types; a NamedTuple because one is built per prediction and a
    frozen dataclass takes twice as long to build (its __init__ sets each field through
    object.__setattr__)."""

    model: LoadedModel
    probability: float
    log_odds: float
    baseline_log_odds: float
    band: RiskBand
    contributions: tuple[Contribution, ...]
    """Sorted by magnitude, largest first."""
    derived: dict[str, float]
    warnings: tuple[InputWarning, ...]
    extrapolated: bool = False
    """True when a feature lay outside the derivation cohort's range (scored at its edge)."""
    given: tuple[float, ...] = ()
    """The features in canonical units as given, in the manifest's order (contributions hold
    the values scored, which for an extrapolated feature is the edge): what input-drift
    monitoring counts."""


def predict(model: LoadedModel, resolved: Resolved) -> Prediction:
    """Score one patient. A feature outside the derivation cohort's range is scored at the
    nearest edge of that range, and the prediction says so (extrapolated, with a warning naming
    the value given): a straight line beyond the data is what turned 20 L of FFP into certainty.
    """
    linear = model.linear
    x: Sequence[float] = resolved.features
    features = model.manifest.features
    warnings = list(resolved.warnings)
    extrapolated = False
    for j, (f, v) in enumerate(zip(features, resolved.features, strict=True)):
        low, high = f.derivation_range
        if not low <= v <= high:
            if not extrapolated:
                x = list(x)  # the caller's features stay as given
                extrapolated = True
            edge = low if v < low else high
            assert isinstance(x, list)
            x[j] = edge
            warnings.append(
                InputWarning(
                    f.name,
                    "extrapolation",
                    f"{f.label} {v:.6g} {f.unit} lies outside the derivation cohort's range "
                    f"{low:.4g} to {high:.4g}: scored at {edge:.4g}, the edge of the validated "
                    "range; the estimate is an extrapolation",
                )
            )
    terms = linear.contributions(x)
    log_odds = linear.baseline + math.fsum(terms)
    probability = bounded_expit(log_odds)
    # tuple.__new__ is what Contribution(...) calls, without its Python-level __new__ (a single
    # prediction builds one per feature, and this is the service's hot path).
    contributions = [
        _new_tuple(Contribution, (f.name, f.label, v, f.unit, t))
        for f, v, t in zip(features, x, terms, strict=True)
    ]
    # Largest magnitude first; the sort is stable, so ties keep the manifest's feature order.
    contributions.sort(key=_magnitude_descending)
    return Prediction(
        model=model,
        probability=probability,
        log_odds=log_odds,
        baseline_log_odds=linear.baseline,
        band=model.manifest.band_for(probability),
        contributions=tuple(contributions),
        derived=resolved.derived,
        warnings=tuple(warnings),
        extrapolated=extrapolated,
        given=tuple(resolved.features),
    )


_new_tuple = tuple.__new__


def _magnitude_descending(c: Contribution) -> float:
    return -abs(c.log_odds)
