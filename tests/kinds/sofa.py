"""A third model kind that exists only in tests: the probability of an outcome from the SOFA
score and lactate. It is the whole of what a new kind needs in service code: one ModelKind
(inputs, features, resolve, the column path), registered in service.core.kinds.MODEL_KINDS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.kinds.base import FeatureSpec, InputField, ModelKind
from service.core.rules import BoolArray, Bounds, Collector, FloatArray, InputRule, usual

SOFA = InputRule("SOFA score", "points", Bounds(0, 24), Bounds(0, 20), integer=True)
LACTATE = InputRule("lactate", "mmol/L", Bounds(0.1, 30), Bounds(0.5, 20), "lactate")


def _resolve(c: Collector, inputs: Mapping[str, Any]) -> tuple[list[float], dict[str, float]]:
    sofa = c.number("sofa", float(inputs["sofa"]), SOFA)
    lactate = c.quantity("lactate", inputs["lactate"], LACTATE, None)
    return [sofa, lactate], {}


def _score_columns(
    columns: Mapping[str, FloatArray],
) -> tuple[BoolArray, FloatArray, dict[str, FloatArray]]:
    sofa, lactate = columns["sofa"], columns["lactate"]
    plain = usual(SOFA, sofa) & (sofa == np.floor(sofa)) & usual(LACTATE, lactate)
    return plain, np.column_stack([sofa, lactate]), {}


KIND = ModelKind(
    name="sofa",
    outcome="death in ICU (test kind)",
    outcome_column="died",
    features=(
        FeatureSpec.from_rule("sofa", "SOFA score", "points", "integer", SOFA),
        FeatureSpec.from_rule("lactate", "lactate", "mmol/L", "float", LACTATE),
    ),
    csv_columns=("sofa", "lactate"),
    inputs=(
        InputField("sofa", "integer", SOFA, required=True),
        InputField("lactate", "quantity", LACTATE, required=True),
    ),
    resolve=_resolve,
    column_form=("sofa", "lactate"),
    score_columns=_score_columns,
    outcome_phrase="death in ICU",
)

# The tiny model's training data: (mean, sd, low, high) per feature, true weights, risk bands.
COLUMNS = [(8.0, 4.0, 0.0, 24.0), (3.0, 2.0, 0.5, 20.0)]
WEIGHTS = [0.3, 0.4]
BANDS = [("low", 0.0, 0.2, "info"), ("high", 0.2, 1.0, "warning")]

MAPPING: dict[str, Any] = {
    "mapping_version": 1,
    "service": {
        "id": "sofa-risk",
        "hook": "patient-view",
        "title": "ICU mortality (test kind)",
        "description": "A test-only kind served by adding files.",
    },
    "model": "sofa",
    "kind": "sofa",
    "prefetch": {
        "sofa": "Observation?patient={{context.patientId}}&code=http://example.org/sofa|sofa",
        "lactate": "Observation?patient={{context.patientId}}&code=http://loinc.org|2524-7",
    },
    "features": [
        {
            "input": "sofa",
            "label": "SOFA score",
            "prefetch": "sofa",
            "resource": "Observation",
            "codes": [{"system": "http://example.org/sofa", "code": "sofa"}],
            "value": "integer",
            "select": "latest",
            "window_hours": 24,
        },
        {
            "input": "lactate",
            "label": "lactate",
            "prefetch": "lactate",
            "resource": "Observation",
            "codes": [{"system": "http://loinc.org", "code": "2524-7"}],
            "value": "quantity",
            "select": "latest",
            "window_hours": 24,
        },
    ],
}
