"""Clinical input rules (CLINICAL.md section 3) and each model kind's features, in canonical units.

One table serves the HTTP API, the CDS Hooks mapping and the training command's CSV checks, so a
value the service would refuse can never end up in a training cohort.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

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

NOREPINEPHRINE_BITARTRATE_PER_BASE = 1.89
"""1 mg norepinephrine base is about 1.89 mg of the bitartrate salt."""

VIS_RULE = InputRule("vasoactive-inotropic score", "", Bounds(0, 600), Bounds(0, 250))
LACTATE_RULE = InputRule("lactate", "mmol/L", Bounds(0.1, 30), Bounds(0.5, 20), "lactate")

INPUT_RULES: dict[str, InputRule] = {
    "apache_ii": InputRule("APACHE II", "points", Bounds(0, 71), Bounds(5, 50), integer=True),
    "lactate_0h": LACTATE_RULE,
    "lactate_24h": LACTATE_RULE,
    "vis_0h": VIS_RULE,
    "vis_24h": VIS_RULE,
    "body_weight": InputRule("body weight", "kg", Bounds(20, 300), Bounds(35, 200), "body_weight"),
    "gwr": InputRule("grey-white matter ratio", "ratio", Bounds(0.8, 1.8), Bounds(1.0, 1.6)),
    "grey_matter_hu": InputRule("grey matter attenuation", "HU", Bounds(5, 60), Bounds(5, 60)),
    "white_matter_hu": InputRule("white matter attenuation", "HU", Bounds(5, 60), Bounds(5, 60)),
    "min_platelets": InputRule(
        "minimum platelet count", "10*9/L", Bounds(0, 2000), Bounds(5, 600), "platelets"
    ),
    "ffp_volume": InputRule(
        "fresh frozen plasma volume", "mL", Bounds(0, 20000), Bounds(0, 8000), "ffp_volume"
    ),
}


@dataclass(frozen=True)
class FeatureSpec:
    """One column of a model's feature vector (what the Pipeline sees), in canonical units."""

    name: str
    label: str
    unit: str
    type: str  # "float" | "integer" | "boolean"
    hard: Bounds
    soft: Bounds


@dataclass(frozen=True)
class ModelKind:
    """What the code knows about a model family; its coefficients come from the artifact."""

    name: str
    outcome: str
    outcome_column: str
    features: tuple[FeatureSpec, ...]
    csv_columns: tuple[str, ...]
    """Columns of a training CSV besides the outcome: the API's inputs in canonical units."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


WEANING = ModelKind(
    name="weaning",
    outcome="successful weaning from VA-ECMO",
    outcome_column="weaned",
    features=(
        FeatureSpec(
            "vrr",
            "24-h VIS reduction rate",
            "fraction",
            "float",
            Bounds(-1, 1),
            Bounds(-1, 1),
        ),
        FeatureSpec("apache_ii", "APACHE II", "points", "integer", Bounds(0, 71), Bounds(5, 50)),
        FeatureSpec("vis_24h", "VIS at 24 h", "score", "float", Bounds(0, 600), Bounds(0, 250)),
        FeatureSpec(
            "lactate_24h", "lactate at 24 h", "mmol/L", "float", Bounds(0.1, 30), Bounds(0.5, 20)
        ),
    ),
    csv_columns=("vis_0h", "vis_24h", "apache_ii", "lactate_24h"),
)

ICH = ModelKind(
    name="ich",
    outcome="intracranial hemorrhage during ECMO",
    outcome_column="ich",
    features=(
        FeatureSpec(
            "gwr", "grey-white matter ratio", "ratio", "float", Bounds(0.8, 1.8), Bounds(1.0, 1.6)
        ),
        FeatureSpec(
            "stroke_history", "history of stroke", "yes/no", "boolean", Bounds(0, 1), Bounds(0, 1)
        ),
        FeatureSpec(
            "ffp_volume_ml",
            "fresh frozen plasma volume",
            "mL",
            "float",
            Bounds(0, 20000),
            Bounds(0, 8000),
        ),
        FeatureSpec(
            "min_platelets",
            "minimum platelet count",
            "10*9/L",
            "float",
            Bounds(0, 2000),
            Bounds(5, 600),
        ),
    ),
    csv_columns=("gwr", "stroke_history", "ffp_volume_ml", "min_platelets"),
)

MODEL_KINDS: dict[str, ModelKind] = {k.name: k for k in (WEANING, ICH)}
