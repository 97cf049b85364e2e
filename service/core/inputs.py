"""Turn a caller's inputs (shape already checked) into a model's feature vector in canonical units.

Inputs are plain mappings as they arrive from JSON, a FHIR mapping or a training CSV. Units are
converted with the unit table, hard bounds are enforced (every failing field is reported, not
only the first), soft bounds produce warnings (service.core.rules.Collector), and the kind's own
resolve function computes its derived values (VIS from infusion rates, VRR, GWR from HU).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.core.kinds.base import ModelKind
from service.core.rules import Collector, InputWarning
from service.core.units import DEFAULT_UNITS, UnitTable
from service.errors import InvalidInput

__all__ = ["InputWarning", "Resolved", "resolve"]


@dataclass
class Resolved:
    features: tuple[float, ...]
    derived: dict[str, float]
    warnings: list[InputWarning] = field(default_factory=list)


def resolve(
    kind: ModelKind, inputs: Mapping[str, Any], units: UnitTable = DEFAULT_UNITS
) -> Resolved:
    """Resolve one patient's inputs; raise InvalidInput listing every failing field."""
    assert kind.resolve is not None, f"kind {kind.name} has no resolve function"
    c = Collector(units)
    features, derived = kind.resolve(c, inputs)
    if c.errors:
        raise InvalidInput(f"{len(c.errors)} input value(s) are not acceptable", c.errors)
    return Resolved(tuple(features), derived, c.warnings)
