"""Clinical input rules: bounds, a rule per input, and the checks that apply them to one patient.

A kind (service.core.kinds) states each input's rule once; the HTTP API, the CDS Hooks mapping,
the column path and the training command's CSV checks all read it from there, so a value the
service would refuse can never end up in a training cohort.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.units import IMPLAUSIBLE_BELOW, UNIT_SLIP_CHECKED, UnitTable
from service.errors import FieldError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Bounds:
    low: float
    high: float
    # A relative 1e-9 slack so that a value exactly at a bound stays inside after a unit
    # conversion's float round-off (14.4 mg/h at 80 kg is 3.0000000000000004 ug/kg/min).
    # Computed once: contains() runs for every value of every patient.
    _low_slack: float = field(init=False, repr=False, compare=False)
    _high_slack: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_low_slack", self.low - _slack(self.low))
        object.__setattr__(self, "_high_slack", self.high + _slack(self.high))

    def contains(self, value: float) -> bool:
        return self._low_slack <= value <= self._high_slack

    def contains_all(self, values: FloatArray) -> BoolArray:
        """contains() for every element of an array."""
        return (values >= self._low_slack) & (values <= self._high_slack)

    def describe(self, unit: str) -> str:
        suffix = f" {unit}" if unit else ""
        return f"{_fmt(self.low)} to {_fmt(self.high)}{suffix}"


def _slack(bound: float) -> float:
    return 1e-9 * max(1.0, abs(bound))


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class InputRule:
    """A clinical quantity as the caller sends it, after conversion to the canonical unit."""

    label: str
    unit: str
    hard: Bounds
    soft: Bounds
    quantity: str | None = None
    """Key into core.units.UNITS when the caller must name a unit; None for unitless scores."""
    integer: bool = False


@dataclass(frozen=True)
class InputWarning:
    path: str
    code: str
    message: str


def quiet(value: float, rule: InputRule) -> bool:
    """True when Collector.number would neither refuse nor warn: most values, which then skip
    wording the messages they will not need (NaN fails every comparison, so it is never quiet)."""
    return (
        rule.soft.contains(value)
        and rule.hard.contains(value)
        and math.isfinite(value)
        and (not rule.integer or value == int(value))
    )


class Collector:
    """Gathers errors and warnings while one patient's inputs are resolved."""

    def __init__(self, units: UnitTable) -> None:
        self.errors: list[FieldError] = []
        self.warnings: list[InputWarning] = []
        self.units = units

    def error(self, path: str, message: str, rule: str, allowed: str | None = None) -> None:
        self.errors.append(FieldError(path, message, rule, allowed))

    def number(self, path: str, value: float, rule: InputRule, shown: str | None = None) -> float:
        """Check a canonical value against hard bounds (error) and soft bounds (warning)."""
        if quiet(value, rule):
            return value
        given = shown or f"{value:g}"
        if not math.isfinite(value):
            self.error(path, f"{rule.label} must be a finite number", "finite")
            return math.nan
        if rule.integer and value != int(value):
            self.error(path, f"{rule.label} must be a whole number, got {given}", "integer")
        if not rule.hard.contains(value):
            self.error(
                path,
                f"{rule.label} {given} is outside the allowed range",
                "range",
                rule.hard.describe(rule.unit),
            )
        elif not rule.soft.contains(value):
            self.warnings.append(
                InputWarning(
                    path,
                    "outside_usual_range",
                    f"{rule.label} {given} is outside the usual range "
                    f"{rule.soft.describe(rule.unit)}; check the value and its unit",
                )
            )
        return value

    def quantity(
        self,
        path: str,
        qty: Mapping[str, Any],
        rule: InputRule,
        weight_kg: float | None,
        salt_factor: float = 1.0,
    ) -> float:
        """Convert {"value", "unit"} (and a salt to its base) to the canonical unit, then check it.

        The hard bounds apply to the converted value: 5 ug/kg/min of norepinephrine bitartrate is
        2.6 ug/kg/min of base, inside the 0-3 bound."""
        assert rule.quantity is not None  # a programming error, not an input check
        unit = qty["unit"]
        value = float(qty["value"])
        conv = self.units.rule(rule.quantity, unit)
        if conv is None:
            allowed = ", ".join(self.units.accepted(rule.quantity))
            hint = self.units.hint(rule.quantity)
            self.error(
                f"{path}.unit", f"unknown unit {unit!r} for {rule.label}{hint}", "unit", allowed
            )
            return math.nan
        canonical = value * conv.factor * salt_factor
        if conv.per_weight:
            if weight_kg is None:
                self.error(
                    f"{path}.unit",
                    f"{unit} is per patient: body_weight is required to convert it",
                    "requires_body_weight",
                    ", ".join(self.units.per_patient_free(rule.quantity)),
                )
                return math.nan
            if math.isnan(weight_kg):
                return math.nan  # the weight itself was reported as an error
            canonical /= weight_kg
        if quiet(canonical, rule):
            return canonical  # nothing to report, so nothing to word
        if self._unit_slip(path, value, unit, canonical, rule, conv.per_weight):
            return math.nan
        shown = (
            f"{value:g} {unit}"
            if unit == rule.unit and salt_factor == 1.0
            else f"{value:g} {unit} (= {canonical:.4g} {rule.unit})"
        )
        return self.number(f"{path}.value", canonical, rule, shown)

    def _unit_slip(
        self,
        path: str,
        value: float,
        unit: str,
        canonical: float,
        rule: InputRule,
        per_weight: bool,
    ) -> bool:
        """Refuse a value implausible for the unit given, naming the unit that makes it usual
        (core.units.UNIT_SLIP_CHECKED, IMPLAUSIBLE_BELOW). True when refused."""
        assert rule.quantity is not None
        floor = IMPLAUSIBLE_BELOW.get(rule.quantity)
        # Below the hard bounds is a range error; between them and the floor, implausible.
        below_floor = floor is not None and rule.hard.contains(canonical) and canonical < floor
        likely: list[str] = []
        if rule.quantity in UNIT_SLIP_CHECKED and not per_weight and math.isfinite(canonical):
            given = self.units.rule(rule.quantity, unit)
            for other in self.units.accepted(rule.quantity):
                conv = self.units.rule(rule.quantity, other)
                # the same unit spelt otherwise (mmol/l for mmol/L) is not a slip
                if conv is None or conv.per_weight or other == unit or conv == given:
                    continue
                if rule.soft.contains(value * conv.factor) and rule.hard.contains(
                    value * conv.factor
                ):
                    likely.append(other)
        here = f"{rule.label} {value:g} {unit} is {canonical:.3g} {rule.unit}"
        if likely and not rule.hard.contains(canonical):
            # Refused by the hard bounds anyway: the range error says which unit fits.
            self.error(
                f"{path}.value",
                f"{here}, outside the allowed range; {value:g} {likely[0]} would be usual: "
                f"check the unit (did you mean {' or '.join(likely)}?)",
                "range",
                rule.hard.describe(rule.unit),
            )
            return True
        if not (below_floor or (likely and canonical < rule.soft.low)):
            return False
        if likely:
            self.error(
                f"{path}.value",
                f"{here}, which is not plausible; {value:g} {likely[0]} would be usual: "
                f"check the unit (did you mean {' or '.join(likely)}?)",
                "implausible_for_unit",
                ", ".join(likely),
            )
        else:
            self.error(
                f"{path}.value",
                f"{here}, which is not a plausible value in any unit",
                "implausible_for_unit",
                f"at least {floor:g} {rule.unit}",
            )
        return True


def usual(rule: InputRule, values: FloatArray) -> BoolArray:
    """For a column: inside the hard bounds and the usual range (no error, no warning)."""
    within: BoolArray = rule.hard.contains_all(values) & rule.soft.contains_all(values)
    return within
