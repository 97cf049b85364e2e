"""Turn a caller's inputs (shape already checked) into a model's feature vector in canonical units.

Inputs are plain mappings as they arrive from JSON, a FHIR mapping or a training CSV. Units are
converted with the whitelist in core.units, hard bounds are enforced (every failing field is
reported, not only the first), soft bounds produce warnings, and derived values (VIS from
infusion rates, the 24-h VIS reduction rate, GWR from Hounsfield units) are computed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.core import specs
from service.core.specs import InputRule, ModelKind
from service.core.units import UNITS, accepted_units, unit_rule
from service.errors import FieldError, InvalidInput


@dataclass(frozen=True)
class InputWarning:
    path: str
    code: str
    message: str


@dataclass
class Resolved:
    features: tuple[float, ...]
    derived: dict[str, float]
    warnings: list[InputWarning] = field(default_factory=list)


def _quiet(value: float, rule: InputRule) -> bool:
    """True when _Collector.number would neither refuse nor warn: most values, which then skip
    wording the messages they will not need (NaN fails every comparison, so it is never quiet)."""
    return (
        rule.soft.contains(value)
        and rule.hard.contains(value)
        and math.isfinite(value)
        and (not rule.integer or value == int(value))
    )


class _Collector:
    """Gathers errors and warnings while one patient's inputs are resolved."""

    def __init__(self, ffp_ml_per_unit: float | None) -> None:
        self.errors: list[FieldError] = []
        self.warnings: list[InputWarning] = []
        self.ffp_ml_per_unit = ffp_ml_per_unit

    def error(self, path: str, message: str, rule: str, allowed: str | None = None) -> None:
        self.errors.append(FieldError(path, message, rule, allowed))

    def number(self, path: str, value: float, rule: InputRule, shown: str | None = None) -> float:
        """Check a canonical value against hard bounds (error) and soft bounds (warning)."""
        if _quiet(value, rule):
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
        conv = unit_rule(rule.quantity, unit, self.ffp_ml_per_unit)
        if conv is None:
            allowed = ", ".join(accepted_units(rule.quantity, self.ffp_ml_per_unit))
            hint = ""
            if rule.quantity == "ffp_volume" and not self.ffp_ml_per_unit:
                hint = " (FFP in units needs ECMO_FFP_ML_PER_UNIT configured)"
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
                    ", ".join(u for u, r in UNITS[rule.quantity][1].items() if not r.per_weight),
                )
                return math.nan
            if math.isnan(weight_kg):
                return math.nan  # the weight itself was reported as an error
            canonical /= weight_kg
        if _quiet(canonical, rule):
            return canonical  # nothing to report, so nothing to word
        shown = (
            f"{value:g} {unit}"
            if unit == rule.unit and salt_factor == 1.0
            else f"{value:g} {unit} (= {canonical:.4g} {rule.unit})"
        )
        return self.number(f"{path}.value", canonical, rule, shown)


def _vis(c: _Collector, path: str, infusions: Mapping[str, Any], weight: float | None) -> float:
    total = 0.0
    errors_before = len(c.errors)
    for drug, weight_factor in specs.VIS_WEIGHTS.items():
        qty = infusions.get(drug)
        if qty is None:
            continue  # not infused
        salt = 1.0
        if drug == "norepinephrine" and qty.get("salt") == "bitartrate":
            salt = 1.0 / specs.NOREPINEPHRINE_BITARTRATE_PER_BASE
        rate = c.quantity(f"{path}.{drug}", qty, specs.RATE_RULES[drug], weight, salt)
        total += weight_factor * rate
    if len(c.errors) > errors_before or math.isnan(total):
        return math.nan  # a rate (or the weight) is already reported; don't repeat it
    if _quiet(total, specs.VIS_RULE):
        return total
    return c.number(path, total, specs.VIS_RULE, f"computed VIS {total:.4g}")


def _resolve_weaning(
    c: _Collector, inputs: Mapping[str, Any]
) -> tuple[list[float], dict[str, float]]:
    weight: float | None = None
    if inputs.get("body_weight") is not None:
        errors_before = len(c.errors)
        weight = c.quantity(
            "body_weight", inputs["body_weight"], specs.INPUT_RULES["body_weight"], None
        )
        if len(c.errors) > errors_before:
            weight = math.nan  # reported; dividing rates by it (0 kg) must not crash or repeat
    vis: dict[str, float] = {}
    for t in ("0h", "24h"):
        if inputs.get(f"vis_{t}") is not None:
            vis[t] = c.number(f"vis_{t}", float(inputs[f"vis_{t}"]), specs.VIS_RULE)
        else:
            vis[t] = _vis(c, f"infusions_{t}", inputs[f"infusions_{t}"], weight)
    apache = c.number("apache_ii", float(inputs["apache_ii"]), specs.INPUT_RULES["apache_ii"])
    lactate = c.quantity("lactate_24h", inputs["lactate_24h"], specs.LACTATE_RULE, weight)
    vrr = math.nan
    if vis["0h"] == 0:
        where = "vis_0h" if inputs.get("vis_0h") is not None else "infusions_0h"
        c.error(
            where,
            "VIS at 0 h is 0, so the 24-h VIS reduction rate (VIS_0h - VIS_24h) / VIS_0h is undefined",
            "nonzero",
            "VIS at 0 h greater than 0",
        )
    elif not (math.isnan(vis["0h"]) or math.isnan(vis["24h"])):
        raw = (vis["0h"] - vis["24h"]) / vis["0h"]
        vrr = min(1.0, max(-1.0, raw))
        if vrr != raw:
            c.warnings.append(
                InputWarning(
                    "vis_24h",
                    "winsorised",
                    f"VIS more than doubled in 24 h (reduction rate {raw:.3g}); "
                    "the model uses the floor of -1",
                )
            )
    derived = {"vis_0h": vis["0h"], "vis_24h": vis["24h"], "vrr": vrr}
    return [vrr, apache, vis["24h"], lactate], derived


def _resolve_ich(c: _Collector, inputs: Mapping[str, Any]) -> tuple[list[float], dict[str, float]]:
    derived: dict[str, float] = {}
    if inputs.get("gwr") is not None:
        gwr = c.number("gwr", float(inputs["gwr"]), specs.INPUT_RULES["gwr"])
    else:
        grey = c.number(
            "grey_matter_hu", float(inputs["grey_matter_hu"]), specs.INPUT_RULES["grey_matter_hu"]
        )
        white = c.number(
            "white_matter_hu",
            float(inputs["white_matter_hu"]),
            specs.INPUT_RULES["white_matter_hu"],
        )
        if c.errors:
            gwr = math.nan  # the HU values are already reported; their ratio would only repeat it
        else:
            ratio = grey / white
            rule = specs.INPUT_RULES["gwr"]
            gwr = (
                ratio
                if _quiet(ratio, rule)
                else c.number("grey_matter_hu", ratio, rule, f"GWR {ratio:.3g} (grey/white HU)")
            )
            derived["gwr"] = gwr
    stroke = 1.0 if inputs["stroke_history"] else 0.0
    ffp = c.quantity("ffp_volume", inputs["ffp_volume"], specs.INPUT_RULES["ffp_volume"], None)
    platelets = c.quantity(
        "min_platelets", inputs["min_platelets"], specs.INPUT_RULES["min_platelets"], None
    )
    return [gwr, stroke, ffp, platelets], derived


_RESOLVERS = {"weaning": _resolve_weaning, "ich": _resolve_ich}


def resolve(
    kind: ModelKind, inputs: Mapping[str, Any], ffp_ml_per_unit: float | None = None
) -> Resolved:
    """Resolve one patient's inputs; raise InvalidInput listing every failing field."""
    c = _Collector(ffp_ml_per_unit)
    features, derived = _RESOLVERS[kind.name](c, inputs)
    if c.errors:
        raise InvalidInput(f"{len(c.errors)} input value(s) are not acceptable", c.errors)
    return Resolved(tuple(features), derived, c.warnings)
