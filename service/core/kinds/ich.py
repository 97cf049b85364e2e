"""The ich kind: intracranial hemorrhage during ECMO, from the grey-white matter ratio (GWR),
history of stroke, fresh frozen plasma volume and the minimum platelet count.

Inputs: gwr, or grey_matter_hu and white_matter_hu (GWR = grey / white); stroke_history;
ffp_volume; min_platelets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.kinds.base import FeatureSpec, InputField, ModelKind
from service.core.rules import BoolArray, Bounds, Collector, FloatArray, InputRule, quiet, usual

GWR = InputRule("grey-white matter ratio", "ratio", Bounds(0.8, 1.8), Bounds(1.0, 1.6))
GREY_MATTER_HU = InputRule("grey matter attenuation", "HU", Bounds(5, 60), Bounds(5, 60))
WHITE_MATTER_HU = InputRule("white matter attenuation", "HU", Bounds(5, 60), Bounds(5, 60))
MIN_PLATELETS = InputRule(
    "minimum platelet count", "10*9/L", Bounds(0, 2000), Bounds(5, 600), "platelets"
)
FFP_VOLUME = InputRule(
    "fresh frozen plasma volume", "mL", Bounds(0, 20000), Bounds(0, 8000), "ffp_volume"
)
STROKE_HISTORY = InputRule("history of stroke", "yes/no", Bounds(0, 1), Bounds(0, 1))
"""The feature's bounds (0 or 1); the input itself is true/false."""


def _resolve(c: Collector, inputs: Mapping[str, Any]) -> tuple[list[float], dict[str, float]]:
    derived: dict[str, float] = {}
    if inputs.get("gwr") is not None:
        given = float(inputs["gwr"])
        if not GWR.hard.contains(given) and GREY_MATTER_HU.hard.contains(given):
            c.error(
                "gwr",
                f"a grey-white matter ratio of {given:g} looks like an attenuation in HU: send "
                "grey_matter_hu and white_matter_hu instead (the ratio is grey / white)",
                "implausible_for_unit",
                f"{GWR.hard.describe(GWR.unit)}; HU values as grey_matter_hu and white_matter_hu",
            )
            gwr = math.nan
        else:
            gwr = c.number("gwr", given, GWR)
    else:
        errors_before = len(c.errors)
        hu: dict[str, float] = {}
        for name, rule in (
            ("grey_matter_hu", GREY_MATTER_HU),
            ("white_matter_hu", WHITE_MATTER_HU),
        ):
            value = float(inputs[name])
            if not rule.hard.contains(value) and GWR.hard.contains(value):
                c.error(
                    name,
                    f"an attenuation of {value:g} HU looks like a grey-white matter ratio: send "
                    "it as gwr instead",
                    "implausible_for_unit",
                    f"{rule.hard.describe('HU')}; a ratio as gwr",
                )
                hu[name] = math.nan
            else:
                hu[name] = c.number(name, value, rule)
        grey, white = hu["grey_matter_hu"], hu["white_matter_hu"]
        if len(c.errors) > errors_before:
            gwr = math.nan  # the HU values are already reported; their ratio would only repeat it
        else:
            ratio = grey / white
            rule = GWR
            gwr = (
                ratio
                if quiet(ratio, rule)
                else c.number("grey_matter_hu", ratio, rule, f"GWR {ratio:.3g} (grey/white HU)")
            )
            derived["gwr"] = gwr
    stroke = 1.0 if inputs["stroke_history"] else 0.0
    ffp = c.quantity("ffp_volume", inputs["ffp_volume"], FFP_VOLUME, None)
    platelets = c.quantity("min_platelets", inputs["min_platelets"], MIN_PLATELETS, None)
    return [gwr, stroke, ffp, platelets], derived


def _score_columns(
    columns: Mapping[str, FloatArray],
) -> tuple[BoolArray, FloatArray, dict[str, FloatArray]]:
    gwr, ffp, platelets = columns["gwr"], columns["ffp_volume"], columns["min_platelets"]
    plain = usual(GWR, gwr) & usual(FFP_VOLUME, ffp) & usual(MIN_PLATELETS, platelets)
    x = np.column_stack([gwr, columns["stroke_history"], ffp, platelets])
    return plain, x, {}


def _cross_check(data: Mapping[str, Any]) -> dict[str, list[str]]:
    hu = [k for k in ("grey_matter_hu", "white_matter_hu") if k in data]
    if "gwr" in data and hu:
        return {"gwr": ["give gwr or grey_matter_hu and white_matter_hu, not both"]}
    if "gwr" not in data and len(hu) != 2:
        missing = [k for k in ("gwr", "grey_matter_hu", "white_matter_hu") if k not in data]
        return {k: ["give gwr, or both grey_matter_hu and white_matter_hu"] for k in missing}
    return {}


KIND = ModelKind(
    name="ich",
    outcome="intracranial hemorrhage during ECMO",
    outcome_column="ich",
    features=(
        # Drift buckets (service/core/drift.py). GWR: ~1.3 normal, < 1.2 suggests
        # hypoxic-ischaemic injury. Stroke: le=0 counts patients without one. FFP mL: none, then
        # about one unit (~250 mL) steps, then massive-transfusion volumes. Platelets 10*9/L:
        # < 20 severe, < 50 bleeding threshold, < 150 thrombocytopenia, > 450 high.
        FeatureSpec.from_rule(
            "gwr",
            "grey-white matter ratio",
            "ratio",
            "float",
            GWR,
            (1.0, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5),
        ),
        FeatureSpec.from_rule(
            "stroke_history", "history of stroke", "yes/no", "boolean", STROKE_HISTORY, (0.0, 1.0)
        ),
        FeatureSpec.from_rule(
            "ffp_volume_ml",
            "fresh frozen plasma volume",
            "mL",
            "float",
            FFP_VOLUME,
            (0.0, 250.0, 500.0, 750.0, 1000.0, 1500.0, 2500.0, 4000.0, 8000.0),
        ),
        FeatureSpec.from_rule(
            "min_platelets",
            "minimum platelet count",
            "10*9/L",
            "float",
            MIN_PLATELETS,
            (20.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 450.0),
        ),
    ),
    csv_columns=("gwr", "stroke_history", "ffp_volume_ml", "min_platelets"),
    inputs=(
        InputField("gwr", "number", GWR),
        InputField("grey_matter_hu", "number", GREY_MATTER_HU),
        InputField("white_matter_hu", "number", WHITE_MATTER_HU),
        InputField(
            "stroke_history", "boolean", required=True, label="history of stroke (true/false)"
        ),
        InputField("ffp_volume", "quantity", FFP_VOLUME, required=True),
        InputField("min_platelets", "quantity", MIN_PLATELETS, required=True),
    ),
    resolve=_resolve,
    column_form=("gwr", "stroke_history", "ffp_volume", "min_platelets"),
    score_columns=_score_columns,
    cross_check=_cross_check,
    outcome_phrase="intracranial hemorrhage",
    feature_inputs={"ffp_volume_ml": ("ffp_volume",)},
)
