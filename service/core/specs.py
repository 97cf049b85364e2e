"""The names service.training imports, kept where they were: the kinds now live in
service.core.kinds (one module per kind), bounds and rules in service.core.rules."""

from __future__ import annotations

from service.core.kinds import ICH, MODEL_KINDS, WEANING
from service.core.kinds.base import FeatureSpec, InputField, ModelKind
from service.core.rules import BoolArray, Bounds, FloatArray, InputRule

__all__ = [
    "ICH",
    "MODEL_KINDS",
    "WEANING",
    "BoolArray",
    "Bounds",
    "FeatureSpec",
    "FloatArray",
    "InputField",
    "InputRule",
    "ModelKind",
]
