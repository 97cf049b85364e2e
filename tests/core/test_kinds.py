"""Each kind states a bound once: a feature that is an input in its canonical unit has the
input's bounds (FeatureSpec.from_rule), and the kind's tables agree with each other."""

from __future__ import annotations

import pytest

from service.core.kinds import MODEL_KINDS
from service.core.kinds.base import ModelKind

KINDS = sorted(MODEL_KINDS.values(), key=lambda k: k.name)


def _source_input(kind: ModelKind, feature: str) -> str | None:
    inputs = kind.feature_inputs.get(feature, (feature,))
    return inputs[0] if len(inputs) == 1 else None


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_feature_bounds_are_the_inputs_bounds(kind: ModelKind) -> None:
    checked = 0
    for f in kind.features:
        name = _source_input(kind, f.name)
        if name is None or name not in {i.name for i in kind.inputs}:
            continue
        rule = kind.input(name).rule
        if rule is None:  # a boolean input: the feature is 0 or 1
            assert (f.hard.low, f.hard.high) == (0, 1)
            continue
        assert (f.hard, f.soft) == (rule.hard, rule.soft), f.name
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_column_form_and_fhir_inputs_are_declared_inputs(kind: ModelKind) -> None:
    declared = {i.name for i in kind.inputs}
    assert set(kind.column_form) <= declared
    assert set(kind.fhir_optional) <= declared
    assert set(kind.feature_inputs) <= set(kind.feature_names)
    assert kind.resolve is not None and kind.score_columns is not None


def test_the_table_is_keyed_by_kind_name() -> None:
    assert all(name == kind.name for name, kind in MODEL_KINDS.items())
    assert set(MODEL_KINDS) == {"weaning", "ich"}
