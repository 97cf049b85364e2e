"""Score a batch given as columns (one array per input) with array arithmetic.

The per-patient path (core.inputs.resolve, then core.predictor.predict) stays the reference: it
words every error and every warning. This module takes only the rows that pass every hard rule
and would raise no warning (no value outside its usual range, no winsorised VRR, no feature outside
the derivation cohort's range) and gives them the same numbers with numpy; every other row is left
for the per-patient path. Two ways in: `score_columns` for the Open Inference Protocol (one unit
per tensor) and `score_patients` for the JSON batch (validated input mappings, a unit per
patient). Bounds, unit factors and the column form come from the kind (core.kinds) and the unit
table (core.units), so there is one set of clinical rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.kinds.base import ModelKind
from service.core.linear import bounded_expit
from service.core.registry import LoadedModel
from service.core.rules import BoolArray, FloatArray, InputRule
from service.core.units import DEFAULT_UNITS, UnitTable


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
    features: FloatArray
    """[n, features]: the canonical feature values, in the manifest's order."""
    derived: dict[str, FloatArray]
    """The derived values core.inputs reports (weaning: vis_0h, vis_24h, vrr; ich: none when
    GWR is given directly, the only form a plain row has)."""


def _factor(rule: InputRule, unit: str | None, units: UnitTable) -> float | None:
    """The canonical-unit factor, or None when the unit needs the per-patient path."""
    assert rule.quantity is not None  # a programming error, not an input check
    conv = units.rule(rule.quantity, unit or "")
    if conv is None or conv.per_weight:
        return None
    return conv.factor


def _quantities(kind: ModelKind) -> tuple[str, ...]:
    """The column inputs that carry a unit ({"value", "unit"} in the JSON API)."""
    return tuple(n for n in kind.column_form if kind.input(n).type == "quantity")


def score_columns(
    model: LoadedModel,
    columns: Mapping[str, FloatArray],
    units: Mapping[str, str | None],
    unit_table: UnitTable = DEFAULT_UNITS,
) -> ColumnScores | None:
    """Score every plain row; None when a column's unit needs the per-patient path for all rows."""
    canonical = dict(columns)
    for name in _quantities(model.kind):
        factor = _factor(model.kind.rule(name), units.get(name), unit_table)
        if factor is None:
            return None
        canonical[name] = columns[name] * factor
    return score_canonical(model, canonical)


def score_patients(
    model: LoadedModel, patients: Sequence[Mapping[str, Any]], units: UnitTable = DEFAULT_UNITS
) -> ColumnScores:
    """Score validated JSON-API input mappings (as the request schema loads them). A patient
    given in another form (infusion rates, body weight, grey/white HU) or in a unit the column
    path cannot convert is not plain: the per-patient path takes it."""
    kind = model.kind
    names = kind.column_form
    expected = frozenset(names)
    quantities = _quantities(kind)
    rules = {name: kind.rule(name) for name in quantities}
    fields = [(name, name in quantities) for name in names]
    # unit -> canonical factor (None: not convertible here), per quantity, filled as met.
    factors: dict[str, dict[str, float | None]] = {name: {} for name in quantities}
    if all(inputs.keys() == expected for inputs in patients):
        # Every patient has the column form: read column by column (a list per input, no row
        # lists). Products and conversions are the same IEEE operations as the loop below.
        columns: dict[str, FloatArray] = {}
        for name, has_unit in fields:
            if not has_unit:
                columns[name] = np.asarray([inputs[name] for inputs in patients], np.float64)
                continue
            quantities_given = [inputs[name] for inputs in patients]
            known = factors[name]
            for unit in {q["unit"] for q in quantities_given}:
                known[unit] = _factor(rules[name], unit, units)
            values = np.asarray([q["value"] for q in quantities_given], np.float64)
            if len(known) == 1:
                (factor,) = known.values()
                scale: Any = math.nan if factor is None else factor
            else:
                scale = np.asarray(
                    [known[q["unit"]] for q in quantities_given], np.float64
                )  # None -> NaN: not plain
            columns[name] = values * scale
        return score_canonical(model, columns)
    rows: list[list[float]] = []
    nan_row = [math.nan] * len(names)
    for inputs in patients:
        if inputs.keys() != expected:
            rows.append(nan_row)
            continue
        row: list[float] = []
        for name, has_unit in fields:
            value = inputs[name]
            if not has_unit:
                row.append(float(value))
                continue
            unit = value["unit"]
            known = factors[name]
            if unit not in known:
                known[unit] = _factor(rules[name], unit, units)
            factor = known[unit]
            # value * factor, as core.inputs converts (NaN: not plain).
            row.append(value["value"] * factor if factor is not None else math.nan)
        rows.append(row)
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return score_canonical(model, {name: table[:, j] for j, name in enumerate(names)})


def score_canonical(model: LoadedModel, columns: Mapping[str, FloatArray]) -> ColumnScores:
    """Score columns already in canonical units (the kind's column form); NaN marks a row as not
    plain."""
    assert model.kind.score_columns is not None, f"kind {model.kind.name} has no column path"
    plain, x, derived = model.kind.score_columns(columns)
    for j, feature in enumerate(model.manifest.features):
        low, high = feature.derivation_range
        plain &= (x[:, j] >= low) & (x[:, j] <= high)  # beyond: an extrapolation warning
    linear = model.linear
    n = len(plain)
    # Elementwise w * (x - mean) rounds exactly as LinearForm.contributions does. The sum and the
    # logistic are taken per row with math.fsum and core.linear.bounded_expit, as core.predictor does:
    # numpy's pairwise sum and SIMD exp differ in the last bit, and a caller comparing the V2 and
    # the JSON API answers for one patient must see the same number (~1 us a row).
    contributions = (x - np.asarray(linear.means)) * np.asarray(linear.weights)
    baseline = linear.baseline
    log_odds = np.fromiter(
        (baseline + math.fsum(row) for row in contributions.tolist()), np.float64, n
    )
    probability = np.fromiter(map(bounded_expit, log_odds.tolist()), np.float64, n)
    edges = np.asarray([b.upper for b in model.manifest.risk_bands[:-1]])
    band = np.searchsorted(edges, probability, side="right")
    return ColumnScores(plain, probability, log_odds, contributions, band, x, derived)
