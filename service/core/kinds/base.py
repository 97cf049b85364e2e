"""What a model kind is: its inputs (as callers send them), its features (what the Pipeline sees),
and the few functions only it knows (deriving features, scoring columns, cross-field rules).

A kind module (service/core/kinds/weaning.py, ich.py) builds one ModelKind; service.core.kinds
holds the one table of them. Everything else (the JSON API's schemas and fast path, the OIP
tensors, the FHIR mapping checks, the column path, CDS cards) is derived from these fields, so
adding a kind adds a module, not branches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from service.core.rules import BoolArray, Bounds, Collector, FloatArray, InputRule

InputType = Literal["integer", "number", "boolean", "quantity", "infusions"]
"""integer, number: a JSON number checked against the rule; boolean: true/false; quantity:
{"value", "unit"} converted with the unit table; infusions: drug -> rate (weaning's VIS)."""

ResolveFn = Callable[[Collector, Mapping[str, Any]], tuple[list[float], dict[str, float]]]
"""One patient's validated inputs -> (feature vector in the kind's order, derived values)."""

ColumnsFn = Callable[
    [Mapping[str, FloatArray]], tuple[BoolArray, FloatArray, dict[str, FloatArray]]
]
"""The column form in canonical units -> (plain rows, [n, features], derived values); a plain
row passes every hard rule and raises no warning. NaN marks a row as not plain."""

CrossCheckFn = Callable[[Mapping[str, Any]], dict[str, list[str]]]
"""Rules across inputs (give exactly one of ...): field -> messages; {} when the body is fine.
It may depend only on which inputs are given, not on their values (the JSON API's fast path
decides once per set of keys)."""


@dataclass(frozen=True)
class InputField:
    """One member of the JSON API's inputs object."""

    name: str
    type: InputType
    rule: InputRule | None = None
    """Bounds and canonical unit (integer, number, quantity); None for boolean and infusions."""
    required: bool = False
    """Required on its own; alternatives (vis_0h or infusions_0h) are the kind's cross_check."""
    label: str = ""
    """Shown to OIP clients; defaults to the rule's label."""
    members: Mapping[str, InputRule] = field(default_factory=dict)
    """infusions: each drug's rate rule (its {value, unit} is checked against it); a FHIR
    mapping must code every drug."""
    salts: tuple[str, ...] = ()
    """infusions: the `salt` values a rate may name (a FHIR value set's code may state one)."""

    @property
    def description(self) -> str:
        return self.label or (self.rule.label if self.rule else self.name)


@dataclass(frozen=True)
class FeatureSpec:
    """One column of a model's feature vector (what the Pipeline sees), in canonical units."""

    name: str
    label: str
    unit: str
    type: str  # "float" | "integer" | "boolean"
    hard: Bounds
    soft: Bounds
    buckets: tuple[float, ...] = ()
    """Fixed, clinically meaningful bucket upper bounds (inclusive, canonical unit) for watching
    this input's distribution (service/core/drift.py); () = ten equal steps over the soft bounds."""

    @classmethod
    def from_rule(
        cls,
        name: str,
        label: str,
        unit: str,
        type: str,
        rule: InputRule,
        buckets: tuple[float, ...] = (),
    ) -> FeatureSpec:
        """A feature that is an input in its canonical unit: its bounds are the input's."""
        return cls(name, label, unit, type, rule.hard, rule.soft, buckets)

    @property
    def drift_buckets(self) -> tuple[float, ...]:
        if self.buckets:
            return self.buckets
        step = (self.soft.high - self.soft.low) / 10
        return tuple(round(self.soft.low + i * step, 10) for i in range(11))


def _no_cross_check(inputs: Mapping[str, Any]) -> dict[str, list[str]]:
    return {}


@dataclass(frozen=True, eq=False)
class ModelKind:
    """What the code knows about a model family; its coefficients come from the artifact."""

    name: str
    outcome: str
    outcome_column: str
    features: tuple[FeatureSpec, ...]
    csv_columns: tuple[str, ...]
    """Columns of a training CSV besides the outcome: the API's inputs in canonical units."""
    inputs: tuple[InputField, ...] = ()
    resolve: ResolveFn | None = None
    column_form: tuple[str, ...] = ()
    """The plain form, one value per input: the OIP tensors, the inputs scored as columns and
    the inputs a FHIR mapping must produce."""
    score_columns: ColumnsFn | None = None
    cross_check: CrossCheckFn = _no_cross_check
    fhir_optional: tuple[str, ...] = ()
    """Inputs a FHIR mapping may produce besides the column form."""
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Column-form input -> inputs that may be given instead (vis_0h or infusions_0h); the kind's
    cross_check refuses both at once. A FHIR mapping maps an input or one of these."""
    outcome_phrase: str = ""
    """How a CDS card names the outcome ("intracranial hemorrhage")."""
    feature_inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Feature -> the inputs it is computed from (default: the input of the same name)."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def input(self, name: str) -> InputField:
        return self._inputs[name]

    @cached_property
    def _inputs(self) -> dict[str, InputField]:
        return {f.name: f for f in self.inputs}

    def rule(self, name: str) -> InputRule:
        rule = self._inputs[name].rule
        assert rule is not None, f"{self.name}.{name} has no rule"
        return rule
