from __future__ import annotations

import math
from pathlib import Path

import pytest

from service.core.inputs import resolve
from service.core.predictor import predict
from service.core.registry import load_version
from tests.factories import ICH_INPUTS, WEANING_INPUTS, fit_tiny, write_model


@pytest.mark.parametrize(("kind", "inputs"), [("weaning", WEANING_INPUTS), ("ich", ICH_INPUTS)])
def test_baseline_plus_contributions_is_the_logit_of_the_probability(
    tmp_path: Path, kind: str, inputs: dict[str, object]
) -> None:
    model = load_version(write_model(tmp_path, kind))
    p = predict(model, resolve(model.kind, inputs))
    total = p.baseline_log_odds + math.fsum(c.log_odds for c in p.contributions)
    assert abs(total - math.log(p.probability / (1 - p.probability))) < 1e-9
    assert [abs(c.log_odds) for c in p.contributions] == sorted(
        (abs(c.log_odds) for c in p.contributions), reverse=True
    )


def test_probability_equals_sklearn_predict_proba(tmp_path: Path) -> None:
    import warnings

    model = load_version(write_model(tmp_path, "weaning"))
    pipeline, _ = fit_tiny("weaning")
    resolved = resolve(model.kind, WEANING_INPUTS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        expected = pipeline.predict_proba([list(resolved.features)])[0, 1]
    assert predict(model, resolved).probability == pytest.approx(expected, abs=1e-12)


def test_value_outside_derivation_range_warns_of_extrapolation(tmp_path: Path) -> None:
    model = load_version(write_model(tmp_path, "ich"))
    p = predict(
        model,
        resolve(model.kind, {**ICH_INPUTS, "min_platelets": {"value": 1900, "unit": "10*9/L"}}),
    )
    codes = {(w.path, w.code) for w in p.warnings}
    assert ("min_platelets", "extrapolation") in codes


def test_band_follows_manifest_thresholds(tmp_path: Path) -> None:
    model = load_version(write_model(tmp_path, "ich"))
    p = predict(model, resolve(model.kind, ICH_INPUTS))
    assert p.band.lower <= p.probability < p.band.upper
