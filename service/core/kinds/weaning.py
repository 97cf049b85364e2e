"""The weaning kind: successful weaning from VA-ECMO, from the 24-h VIS reduction rate (VRR),
APACHE II, VIS at 24 h and lactate at 24 h.

Inputs: apache_ii, lactate_24h, vis_0h or infusions_0h, vis_24h or infusions_24h, optional
body_weight (needed only for per-patient infusion units). VIS (Gaies et al. 2010) is computed from
infusion rates when they are given; VRR = (VIS_0h - VIS_24h) / VIS_0h, winsorised to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.kinds.base import FeatureSpec, InputField, ModelKind
from service.core.rules import (
    BoolArray,
    Bounds,
    Collector,
    FloatArray,
    InputRule,
    InputWarning,
    quiet,
    usual,
)

RATE_RULES: dict[str, InputRule] = {
    "dopamine": InputRule(
        "dopamine", "ug/kg/min", Bounds(0, 30), Bounds(0, 20), "catecholamine_rate"
    ),
    "dobutamine": InputRule(
        "dobutamine", "ug/kg/min", Bounds(0, 30), Bounds(0, 20), "catecholamine_rate"
    ),
    "epinephrine": InputRule(
        "epinephrine", "ug/kg/min", Bounds(0, 3), Bounds(0, 1), "catecholamine_rate"
    ),
    "norepinephrine": InputRule(
        "norepinephrine (base)", "ug/kg/min", Bounds(0, 3), Bounds(0, 1), "catecholamine_rate"
    ),
    "milrinone": InputRule(
        "milrinone", "ug/kg/min", Bounds(0, 1.5), Bounds(0, 0.75), "catecholamine_rate"
    ),
    "vasopressin": InputRule(
        "vasopressin", "U/kg/min", Bounds(0, 0.002), Bounds(0, 0.001), "vasopressin_rate"
    ),
}

VIS_WEIGHTS: dict[str, float] = {
    # Gaies et al. 2010. Extended terms (levosimendan, terlipressin, ...) are deliberately absent.
    "dopamine": 1.0,
    "dobutamine": 1.0,
    "epinephrine": 100.0,
    "milrinone": 10.0,
    "vasopressin": 10000.0,
    "norepinephrine": 100.0,
}

NOREPINEPHRINE_SALTS: dict[str, float] = {
    # mg of the charted form per mg of norepinephrine base, from molar masses: base 169.18,
    # bitartrate anhydrous 319.27 (C8H11NO3 . C4H6O6), bitartrate monohydrate 337.29 (+ H2O).
    "base": 1.0,
    "bitartrate_anhydrous": 319.27 / 169.18,  # 1.887
    "bitartrate_monohydrate": 337.29 / 169.18,  # 1.994, what many labels state
}
"""The `salt` a norepinephrine rate may be charted as; the rate is divided by its factor to give
the base rate. A plain "bitartrate" is refused: the two hydrates differ by 5 %."""

VIS_RULE = InputRule("vasoactive-inotropic score", "", Bounds(0, 600), Bounds(0, 250))
LACTATE_RULE = InputRule("lactate", "mmol/L", Bounds(0.1, 30), Bounds(0.5, 20), "lactate")

APACHE_II = InputRule("APACHE II", "points", Bounds(0, 71), Bounds(5, 50), integer=True)
BODY_WEIGHT = InputRule("body weight", "kg", Bounds(20, 300), Bounds(35, 200), "body_weight")


def _vis(c: Collector, path: str, infusions: Mapping[str, Any], weight: float | None) -> float:
    total = 0.0
    errors_before = len(c.errors)
    for drug, weight_factor in VIS_WEIGHTS.items():
        qty = infusions.get(drug)
        if qty is None:
            continue  # not infused
        salt = 1.0
        if drug == "norepinephrine":
            salt = 1.0 / NOREPINEPHRINE_SALTS[qty.get("salt") or "base"]
        rate = c.quantity(f"{path}.{drug}", qty, RATE_RULES[drug], weight, salt)
        total += weight_factor * rate
    if len(c.errors) > errors_before or math.isnan(total):
        return math.nan  # a rate (or the weight) is already reported; don't repeat it
    if quiet(total, VIS_RULE):
        return total
    return c.number(path, total, VIS_RULE, f"computed VIS {total:.4g}")


def _resolve(c: Collector, inputs: Mapping[str, Any]) -> tuple[list[float], dict[str, float]]:
    weight: float | None = None
    if inputs.get("body_weight") is not None:
        errors_before = len(c.errors)
        weight = c.quantity("body_weight", inputs["body_weight"], BODY_WEIGHT, None)
        if len(c.errors) > errors_before:
            weight = math.nan  # reported; dividing rates by it (0 kg) must not crash or repeat
    vis: dict[str, float] = {}
    for t in ("0h", "24h"):
        if inputs.get(f"vis_{t}") is not None:
            vis[t] = c.number(f"vis_{t}", float(inputs[f"vis_{t}"]), VIS_RULE)
        else:
            vis[t] = _vis(c, f"infusions_{t}", inputs[f"infusions_{t}"], weight)
    apache = c.number("apache_ii", float(inputs["apache_ii"]), APACHE_II)
    lactate = c.quantity("lactate_24h", inputs["lactate_24h"], LACTATE_RULE, weight)
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


def _score_columns(
    columns: Mapping[str, FloatArray],
) -> tuple[BoolArray, FloatArray, dict[str, FloatArray]]:
    apache, vis0, vis24 = columns["apache_ii"], columns["vis_0h"], columns["vis_24h"]
    lactate = columns["lactate_24h"]
    plain = (
        usual(APACHE_II, apache)
        & (apache == np.floor(apache))
        & usual(VIS_RULE, vis0)
        & usual(VIS_RULE, vis24)
        & usual(LACTATE_RULE, lactate)
        & (vis0 > 0)
    )
    vrr = (vis0 - vis24) / np.where(vis0 > 0, vis0, 1.0)
    plain &= (vrr >= -1.0) & (vrr <= 1.0)  # beyond: winsorised, with a warning
    x = np.column_stack([vrr, apache, vis24, lactate])
    return plain, x, {"vis_0h": vis0, "vis_24h": vis24, "vrr": vrr}


def _exactly_one(data: Mapping[str, Any], a: str, b: str) -> dict[str, list[str]]:
    if (a in data) == (b in data):
        return {a if a not in data else b: [f"give exactly one of {a} or {b}"]}
    return {}


def _cross_check(inputs: Mapping[str, Any]) -> dict[str, list[str]]:
    return _exactly_one(inputs, "vis_0h", "infusions_0h") or _exactly_one(
        inputs, "vis_24h", "infusions_24h"
    )


KIND = ModelKind(
    name="weaning",
    outcome="successful weaning from VA-ECMO",
    outcome_column="weaned",
    features=(
        # Drift buckets (service/core/drift.py). VRR: < 0 = more support at 24 h than at start,
        # 1 = off all vasoactives. APACHE II: the usual 5-point strata, then 35-40, 41-50, > 50.
        # VIS: Gaies 2010 groups (< 10, 10-14, 15-19, 20-24, >= 25), the high range split up.
        # Lactate mmol/L: <= 2 normal, > 4 the shock threshold, > 10 severe.
        FeatureSpec(
            "vrr",
            "24-h VIS reduction rate",
            "fraction",
            "float",
            Bounds(-1, 1),
            Bounds(-1, 1),
            (-0.5, 0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99),
        ),
        FeatureSpec.from_rule(
            "apache_ii",
            "APACHE II",
            "points",
            "integer",
            APACHE_II,
            (4.0, 9.0, 14.0, 19.0, 24.0, 29.0, 34.0, 40.0, 50.0),
        ),
        FeatureSpec.from_rule(
            "vis_24h",
            "VIS at 24 h",
            "score",
            "float",
            VIS_RULE,
            (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 40.0, 60.0, 100.0, 250.0),
        ),
        FeatureSpec.from_rule(
            "lactate_24h",
            "lactate at 24 h",
            "mmol/L",
            "float",
            LACTATE_RULE,
            (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0),
        ),
    ),
    csv_columns=("vis_0h", "vis_24h", "apache_ii", "lactate_24h"),
    inputs=(
        InputField("apache_ii", "integer", APACHE_II, required=True),
        InputField("lactate_24h", "quantity", LACTATE_RULE, required=True),
        InputField("vis_0h", "number", VIS_RULE),
        InputField("vis_24h", "number", VIS_RULE),
        InputField(
            "infusions_0h",
            "infusions",
            members=RATE_RULES,
            salts=tuple(NOREPINEPHRINE_SALTS),
        ),
        InputField(
            "infusions_24h",
            "infusions",
            members=RATE_RULES,
            salts=tuple(NOREPINEPHRINE_SALTS),
        ),
        InputField("body_weight", "quantity", BODY_WEIGHT),
    ),
    resolve=_resolve,
    column_form=("apache_ii", "vis_0h", "vis_24h", "lactate_24h"),
    score_columns=_score_columns,
    cross_check=_cross_check,
    fhir_optional=("body_weight",),
    alternatives={"vis_0h": ("infusions_0h",), "vis_24h": ("infusions_24h",)},
    outcome_phrase="successful weaning from VA-ECMO",
    feature_inputs={
        "vrr": ("vis_0h", "infusions_0h", "vis_24h", "infusions_24h"),
        "vis_24h": ("vis_24h", "infusions_24h"),
    },
)
