from __future__ import annotations

import math
from typing import Any

import pytest

from service.core.inputs import resolve
from service.core.specs import ICH, WEANING
from service.core.units import UnitTable
from service.errors import InvalidInput
from tests.factories import ICH_INPUTS, WEANING_INPUTS


def weaning(**changes: Any) -> dict[str, Any]:
    inputs = dict(WEANING_INPUTS)
    inputs.update(changes)
    return {k: v for k, v in inputs.items() if v is not None}


def errors_of(kind: Any, inputs: dict[str, Any], **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as info:
        resolve(kind, inputs, **kw)
    return [(e.path, e.rule) for e in info.value.errors]


def test_weaning_features_are_vrr_apache_vis24_lactate_in_order() -> None:
    r = resolve(WEANING, WEANING_INPUTS)
    assert r.features == pytest.approx((0.7, 22, 12, 2.8))
    assert r.derived == pytest.approx({"vis_0h": 40, "vis_24h": 12, "vrr": 0.7})


@pytest.mark.parametrize(
    ("value", "unit", "mmol"),
    [(2.8, "mmol/L", 2.8), (25.2224, "mg/dL", 2.8), (2800, "umol/L", 2.8)],
)
def test_lactate_units_convert_to_mmol_per_l(value: float, unit: str, mmol: float) -> None:
    r = resolve(WEANING, weaning(lactate_24h={"value": value, "unit": unit}))
    assert r.features[3] == pytest.approx(mmol, rel=1e-6)


def test_unknown_unit_is_rejected_with_the_accepted_list() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve(WEANING, weaning(lactate_24h={"value": 2.8, "unit": "mmol"}))
    (err,) = info.value.errors
    assert err.path == "lactate_24h.unit" and err.rule == "unit"
    assert err.allowed is not None and "mg/dL" in err.allowed


def test_infusion_rates_give_the_vis_they_imply() -> None:
    # 0 h: norepinephrine 0.2 ug/kg/min (20) + dobutamine 5 (5) + vasopressin 0.0004 U/kg/min (4) = 29
    # 24 h: norepinephrine given as ug/min for 80 kg: 4 ug/min = 0.05 ug/kg/min -> 5
    inputs = weaning(
        vis_0h=None,
        vis_24h=None,
        body_weight={"value": 80, "unit": "kg"},
        infusions_0h={
            "norepinephrine": {"value": 0.2, "unit": "ug/kg/min"},
            "dobutamine": {"value": 5, "unit": "ug/kg/min"},
            "vasopressin": {"value": 0.032, "unit": "U/min"},
        },
        infusions_24h={"norepinephrine": {"value": 4, "unit": "ug/min"}},
    )
    r = resolve(WEANING, inputs)
    assert r.derived["vis_0h"] == pytest.approx(29.0)
    assert r.derived["vis_24h"] == pytest.approx(5.0)
    direct = resolve(WEANING, weaning(vis_0h=29.0, vis_24h=5.0))
    assert r.features == pytest.approx(direct.features, abs=1e-12)


@pytest.mark.parametrize(
    ("salt", "molar_mass"), [("bitartrate_anhydrous", 319.27), ("bitartrate_monohydrate", 337.29)]
)
def test_norepinephrine_bitartrate_is_converted_to_base(salt: str, molar_mass: float) -> None:
    # 0.1 ug/kg/min of base (169.18 g/mol) charted as the salt: VIS 10.
    rate = {"value": 0.1 * molar_mass / 169.18, "unit": "ug/kg/min", "salt": salt}
    r = resolve(WEANING, weaning(vis_0h=None, infusions_0h={"norepinephrine": rate}))
    assert r.derived["vis_0h"] == pytest.approx(10.0)


def test_vasopressin_mu_and_u_differ_by_a_thousand() -> None:
    u = resolve(
        WEANING,
        weaning(vis_0h=None, infusions_0h={"vasopressin": {"value": 0.0004, "unit": "U/kg/min"}}),
    )
    mu = resolve(
        WEANING,
        weaning(vis_0h=None, infusions_0h={"vasopressin": {"value": 0.4, "unit": "mU/kg/min"}}),
    )
    assert u.derived["vis_0h"] == pytest.approx(4.0) == mu.derived["vis_0h"]


def test_per_minute_units_without_body_weight_are_rejected() -> None:
    inputs = weaning(vis_0h=None, infusions_0h={"dopamine": {"value": 400, "unit": "ug/min"}})
    assert errors_of(WEANING, inputs) == [("infusions_0h.dopamine.unit", "requires_body_weight")]


def test_vis_0h_zero_is_rejected_as_undefined_reduction_rate() -> None:
    assert errors_of(WEANING, weaning(vis_0h=0)) == [("vis_0h", "nonzero")]


def test_all_vasoactives_off_at_0h_is_the_same_error() -> None:
    assert errors_of(WEANING, weaning(vis_0h=None, infusions_0h={})) == [
        ("infusions_0h", "nonzero")
    ]


def test_every_failing_field_is_reported_not_only_the_first() -> None:
    errs = errors_of(WEANING, weaning(apache_ii=80, lactate_24h={"value": 99, "unit": "mmol/L"}))
    assert sorted(errs) == [("apache_ii", "range"), ("lactate_24h.value", "range")]


def test_negative_rate_is_out_of_range() -> None:
    inputs = weaning(vis_0h=None, infusions_0h={"milrinone": {"value": -0.1, "unit": "ug/kg/min"}})
    assert ("infusions_0h.milrinone.value", "range") in errors_of(WEANING, inputs)


def test_escalation_beyond_doubling_is_winsorised_with_a_warning() -> None:
    r = resolve(WEANING, weaning(vis_0h=10, vis_24h=50))
    assert r.features[0] == -1.0
    assert [w.code for w in r.warnings] == ["winsorised"]


def test_soft_bound_gives_warning_not_error() -> None:
    r = resolve(WEANING, weaning(apache_ii=60))
    assert [(w.path, w.code) for w in r.warnings] == [("apache_ii", "outside_usual_range")]


def test_gwr_from_hounsfield_units() -> None:
    inputs = {k: v for k, v in ICH_INPUTS.items() if k != "gwr"}
    r = resolve(ICH, {**inputs, "grey_matter_hu": 37.5, "white_matter_hu": 30.0})
    assert r.features[0] == pytest.approx(1.25)
    assert r.derived["gwr"] == pytest.approx(1.25)


@pytest.mark.parametrize(
    ("value", "unit", "canonical"),
    [
        (80, "10*3/uL", 80),
        (80, "/nL", 80),
        (80, "K/uL", 80),
        (80000, "/uL", 80),
        (80, "10*9/L", 80),
    ],
)
def test_platelet_units(value: float, unit: str, canonical: float) -> None:
    r = resolve(ICH, {**ICH_INPUTS, "min_platelets": {"value": value, "unit": unit}})
    assert r.features[3] == pytest.approx(canonical)


def test_ffp_in_litres_and_bags() -> None:
    litres = resolve(ICH, {**ICH_INPUTS, "ffp_volume": {"value": 0.4, "unit": "L"}})
    assert litres.features[2] == pytest.approx(400)
    bags = {**ICH_INPUTS, "ffp_volume": {"value": 2, "unit": "{unit}"}}
    assert errors_of(ICH, bags) == [("ffp_volume.unit", "unit")]
    assert resolve(ICH, bags, UnitTable(250)).features[2] == pytest.approx(500)


def test_stroke_history_is_one_or_zero() -> None:
    assert resolve(ICH, {**ICH_INPUTS, "stroke_history": True}).features[1] == 1.0
    assert resolve(ICH, ICH_INPUTS).features[1] == 0.0


def test_non_finite_value_is_rejected() -> None:
    assert errors_of(WEANING, weaning(vis_24h=math.inf)) == [("vis_24h", "finite")]


def test_hu_ratio_outside_gwr_bounds_is_rejected_on_grey_matter() -> None:
    inputs = {k: v for k, v in ICH_INPUTS.items() if k != "gwr"}
    assert errors_of(ICH, {**inputs, "grey_matter_hu": 59.0, "white_matter_hu": 20.0}) == [
        ("grey_matter_hu", "range")
    ]


def test_all_ich_errors_reported_together() -> None:
    inputs = {k: v for k, v in ICH_INPUTS.items() if k != "gwr"}
    bad = {
        **inputs,
        "grey_matter_hu": 99.0,
        "white_matter_hu": 30.0,
        "min_platelets": {"value": 5000, "unit": "10*9/L"},
    }
    assert sorted(errors_of(ICH, bad)) == [
        ("grey_matter_hu", "range"),
        ("min_platelets.value", "range"),
    ]
