"""Score a batch given as columns (one array per input) with array arithmetic.

The per-patient path (core.inputs.resolve, then core.predictor.predict) stays the reference: it
words every error and every warning. This module takes only the rows that pass every hard rule
and would raise no warning (no value outside its usual range, no winsorised VRR, no feature outside
the derivation cohort's range) and gives them the same numbers with numpy; every other row is left
for the per-patient path. Bounds and unit factors come from the same tables (core.specs,
core.units), so there is one set of clinical rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from service.core import specs
from service.core.linear import expit
from service.core.registry import LoadedModel
from service.core.specs import BoolArray, FloatArray, InputRule
from service.core.units import unit_rule

COLUMN_INPUTS: dict[str, tuple[str, ...]] = {
    "weaning": ("apache_ii", "vis_0h", "vis_24h", "lactate_24h"),
    "ich": ("gwr", "stroke_history", "ffp_volume", "min_platelets"),
}


@dataclass(frozen=True)
class ColumnScores:
    plain: BoolArray
    """Rows scored here; the others need the per-patient path (an error or a warning)."""
    probability: FloatArray
    log_odds: FloatArray
    contributions: FloatArray
    """[n, features] in the manifest's feature order."""
    band: np.ndarray
    """Index into the manifest's risk_bands."""


def _factor(rule: InputRule, unit: str | None, ffp_ml_per_unit: float | None) -> float | None:
    """The canonical-unit factor, or None when the unit needs the per-patient path."""
    assert rule.quantity is not None  # a programming error, not an input check
    conv = unit_rule(rule.quantity, unit or "", ffp_ml_per_unit)
    if conv is None or conv.per_weight:
        return None
    return conv.factor


def _usual(rule: InputRule, values: FloatArray) -> BoolArray:
    """Inside the hard bounds and the usual range: no error, no warning."""
    within: BoolArray = rule.hard.contains_all(values) & rule.soft.contains_all(values)
    return within


def score_columns(
    model: LoadedModel,
    columns: Mapping[str, FloatArray],
    units: Mapping[str, str | None],
    ffp_ml_per_unit: float | None = None,
) -> ColumnScores | None:
    """Score every plain row; None when a column's unit needs the per-patient path for all rows."""
    rules = specs.INPUT_RULES
    if model.kind.name == "weaning":
        lactate_factor = _factor(specs.LACTATE_RULE, units.get("lactate_24h"), ffp_ml_per_unit)
        if lactate_factor is None:
            return None
        apache, vis0, vis24 = columns["apache_ii"], columns["vis_0h"], columns["vis_24h"]
        lactate = columns["lactate_24h"] * lactate_factor
        plain = (
            _usual(rules["apache_ii"], apache)
            & (apache == np.floor(apache))
            & _usual(specs.VIS_RULE, vis0)
            & _usual(specs.VIS_RULE, vis24)
            & _usual(specs.LACTATE_RULE, lactate)
            & (vis0 > 0)
        )
        vrr = (vis0 - vis24) / np.where(vis0 > 0, vis0, 1.0)
        plain &= (vrr >= -1.0) & (vrr <= 1.0)  # beyond: winsorised, with a warning
        x = np.column_stack([vrr, apache, vis24, lactate])
    else:
        ffp_factor = _factor(rules["ffp_volume"], units.get("ffp_volume"), ffp_ml_per_unit)
        platelet_factor = _factor(
            rules["min_platelets"], units.get("min_platelets"), ffp_ml_per_unit
        )
        if ffp_factor is None or platelet_factor is None:
            return None
        gwr = columns["gwr"]
        ffp = columns["ffp_volume"] * ffp_factor
        platelets = columns["min_platelets"] * platelet_factor
        plain = (
            _usual(rules["gwr"], gwr)
            & _usual(rules["ffp_volume"], ffp)
            & _usual(rules["min_platelets"], platelets)
        )
        x = np.column_stack([gwr, columns["stroke_history"], ffp, platelets])
    for j, feature in enumerate(model.manifest.features):
        low, high = feature.derivation_range
        plain &= (x[:, j] >= low) & (x[:, j] <= high)  # beyond: an extrapolation warning
    linear = model.linear
    n = len(plain)
    # Elementwise w * (x - mean) rounds exactly as LinearForm.contributions does. The sum and the
    # logistic are taken per row with math.fsum and core.linear.expit, as core.predictor does:
    # numpy's pairwise sum and SIMD exp differ in the last bit, and a caller comparing the V2 and
    # the JSON API answers for one patient must see the same number (~1 us a row).
    contributions = (x - np.asarray(linear.means)) * np.asarray(linear.weights)
    baseline = linear.baseline
    log_odds = np.fromiter(
        (baseline + math.fsum(row) for row in contributions.tolist()), np.float64, n
    )
    probability = np.fromiter(map(expit, log_odds.tolist()), np.float64, n)
    edges = np.asarray([b.upper for b in model.manifest.risk_bands[:-1]])
    band = np.searchsorted(edges, probability, side="right")
    return ColumnScores(plain, probability, log_odds, contributions, band)
