"""Clinical safety at the edges (issue 13, items 1-3), on every face that carries the field:
the JSON API (single and batch), the Open Inference Protocol and CDS Hooks."""

from __future__ import annotations

import math
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.cds import fhir
from tests.factories import ICH_INPUTS, WEANING_INPUTS


def _single(client: FlaskClient, model: str, inputs: dict[str, Any]) -> Any:
    return client.post(f"/v1/models/{model}/predict", json={"inputs": inputs})


def _batch(client: FlaskClient, model: str, inputs: dict[str, Any]) -> Any:
    return client.post(f"/v1/models/{model}/predict/batch", json={"patients": [{"inputs": inputs}]})


def _ich_tensors(ffp_ml: float, platelets: float, platelet_unit: str) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "gwr", "shape": [1], "datatype": "FP64", "data": [1.25]},
            {"name": "stroke_history", "shape": [1], "datatype": "BOOL", "data": [False]},
            {
                "name": "ffp_volume",
                "shape": [1],
                "datatype": "FP64",
                "data": [ffp_ml],
                "parameters": {"unit": "mL"},
            },
            {
                "name": "min_platelets",
                "shape": [1],
                "datatype": "FP64",
                "data": [platelets],
                "parameters": {"unit": platelet_unit},
            },
        ]
    }


# -- 1. extrapolation never reaches certainty ---------------------------------------------------

# 20 L of FFP is inside the hard bounds; the tiny test model's FFP weight (0.002 per mL) made its
# log-odds ~40, which a float holds only as probability 1.0.
EXTREME_ICH = {**ICH_INPUTS, "ffp_volume": {"value": 20000, "unit": "mL"}}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _assert_bounded_and_additive(answer: dict[str, Any]) -> None:
    p = answer["probability"]
    assert 0 < p < 1, p
    total = answer["baseline_log_odds"] + sum(c["log_odds"] for c in answer["contributions"])
    assert math.isclose(total, answer["log_odds"], abs_tol=1e-9)
    assert math.isclose(_logit(p), answer["log_odds"], rel_tol=1e-6, abs_tol=1e-6)


def test_an_input_beyond_the_derivation_range_never_gives_certainty(client: FlaskClient) -> None:
    r = _single(client, "ich", EXTREME_ICH)
    assert r.status_code == 200, r.data
    body = r.get_json()
    _assert_bounded_and_additive(body)
    assert body["extrapolated"] is True
    ffp = next(c for c in body["contributions"] if c["feature"] == "ffp_volume_ml")
    assert ffp["value"] < 20000  # scored at the edge of the derivation range, not beyond
    assert any(w["code"] == "extrapolation" and "20000" in w["message"] for w in body["warnings"])


def test_a_patient_inside_the_derivation_range_is_not_extrapolated(client: FlaskClient) -> None:
    single = _single(client, "ich", ICH_INPUTS).get_json()
    batch = _batch(client, "ich", ICH_INPUTS).get_json()["predictions"][0]
    assert single["extrapolated"] is False and batch["extrapolated"] is False


def test_batch_items_carry_the_same_extrapolation_policy(client: FlaskClient) -> None:
    item = _batch(client, "ich", EXTREME_ICH).get_json()["predictions"][0]
    _assert_bounded_and_additive(item)
    assert item["extrapolated"] is True
    single = _single(client, "ich", EXTREME_ICH).get_json()
    assert item == {k: v for k, v in single.items() if k not in ("request_id", "model")}


def test_oip_reports_extrapolation_and_never_certainty(client: FlaskClient) -> None:
    r = client.post("/v2/models/ich/infer", json=_ich_tensors(20000, 80, "10*9/L"))
    assert r.status_code == 200, r.data
    out = {o["name"]: o["data"] for o in r.get_json()["outputs"]}
    assert 0 < out["probability"][0] < 1
    assert out["extrapolated"] == [True]
    assert math.isclose(_logit(out["probability"][0]), out["log_odds"][0], rel_tol=1e-6)


def test_a_cds_card_is_never_critical_on_extrapolation_and_says_so(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["ffp"] = fhir.bundle(
        fhir.observation(fhir.LOCAL, "ffp-volume", 20000, "mL", hours_ago=3)
    )
    r = client.post("/cds-services/ecmo-ich-risk", json=fhir.cds_request(prefetch))
    assert r.status_code == 200, r.data
    card = r.get_json()["cards"][0]
    # ich's high band is 'critical' in the test bands; an extrapolated estimate is not.
    assert card["indicator"] == "warning"
    assert "outside the validated range" in card["detail"]
    assert card["extension"]["ecmo-risk-service"]["extrapolated"] is True
    assert 0 < card["extension"]["ecmo-risk-service"]["probability"] < 1


# -- 2. a value implausible for the unit given is refused, naming the likely unit ---------------


@pytest.mark.parametrize(
    ("quantity", "given", "likely"),
    [
        ("min_platelets", {"value": 80, "unit": "/uL"}, "10*9/L"),  # meant 80 x10^9/L
        ("min_platelets", {"value": 0, "unit": "10*9/L"}, None),  # no count of zero
        ("min_platelets", {"value": 0.5, "unit": "10*9/L"}, None),
    ],
)
def test_platelets_implausible_for_the_unit_are_refused(
    client: FlaskClient, quantity: str, given: dict[str, Any], likely: str | None
) -> None:
    inputs = {**ICH_INPUTS, quantity: given}
    for r in (_single(client, "ich", inputs), _batch(client, "ich", inputs)):
        assert r.status_code == 422, r.data
        (error,) = r.get_json()["errors"]
        assert error["path"].endswith(f"{quantity}.value")
        assert error["rule"] == "implausible_for_unit"
        if likely:
            assert likely in error["allowed"] and likely in error["message"]


@pytest.mark.parametrize(
    ("given", "likely", "rule"),
    [
        # 0.33 mmol/L, inside the hard bounds but no patient's: meant 3 mmol/L
        ({"value": 3.0, "unit": "mg/dL"}, "mmol/L", "implausible_for_unit"),
        # 45 mmol/L is beyond the hard bounds anyway; the range error names the unit that fits
        ({"value": 45.0, "unit": "mmol/L"}, "mg/dL", "range"),
    ],
)
def test_lactate_that_makes_sense_only_in_the_other_unit_is_refused(
    client: FlaskClient, given: dict[str, Any], likely: str, rule: str
) -> None:
    inputs = {**WEANING_INPUTS, "lactate_24h": given}
    for r in (_single(client, "weaning", inputs), _batch(client, "weaning", inputs)):
        assert r.status_code == 422, r.data
        (error,) = r.get_json()["errors"]
        assert error["rule"] == rule
        assert f"did you mean {likely}" in error["message"]


def test_a_low_lactate_that_is_plausible_in_its_unit_is_only_a_warning(
    client: FlaskClient,
) -> None:
    r = _single(
        client, "weaning", {**WEANING_INPUTS, "lactate_24h": {"value": 0.4, "unit": "mmol/L"}}
    )
    assert r.status_code == 200, r.data


@pytest.mark.parametrize(
    ("field", "value", "likely"), [("gwr", 35, "grey_matter_hu"), ("grey_matter_hu", 1.3, "gwr")]
)
def test_gwr_and_attenuation_swapped_are_refused_naming_the_right_field(
    client: FlaskClient, field: str, value: float, likely: str
) -> None:
    inputs: dict[str, Any] = {k: v for k, v in ICH_INPUTS.items() if k != "gwr"}
    if field == "gwr":
        inputs["gwr"] = value
    else:
        inputs.update(grey_matter_hu=value, white_matter_hu=30)
    r = _single(client, "ich", inputs)
    assert r.status_code == 422, r.data
    error = r.get_json()["errors"][0]
    assert error["path"] == f"inputs.{field}"
    assert likely in error["message"]


def test_oip_refuses_a_platelet_count_implausible_for_its_unit(client: FlaskClient) -> None:
    r = client.post("/v2/models/ich/infer", json=_ich_tensors(400, 80, "/uL"))
    assert r.status_code == 422, r.data
    (error,) = r.get_json()["errors"]
    assert error["path"] == "inputs.3.data.0" and error["rule"] == "implausible_for_unit"


def test_cds_refuses_a_platelet_count_implausible_for_its_unit(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = fhir.bundle(
        fhir.observation(fhir.LOINC, "26515-7", 80, "/uL", hours_ago=2)
    )
    r = client.post("/cds-services/ecmo-ich-risk", json=fhir.cds_request(prefetch))
    # CDS Hooks answers unusable prefetched data with 400 (invalid_clinical_data), at its FHIR path.
    assert r.status_code == 400, r.data
    (error,) = r.get_json()["errors"]
    assert error["rule"] == "implausible_for_unit" and error["path"].startswith(
        "prefetch.platelets"
    )


# -- 3. the norepinephrine salt names its hydrate ----------------------------------------------


def _with_norepinephrine(rate: dict[str, Any]) -> dict[str, Any]:
    inputs = {k: v for k, v in WEANING_INPUTS.items() if k != "vis_24h"}
    inputs["infusions_24h"] = {"norepinephrine": rate}
    return inputs


def _vis_24h(client: FlaskClient, rate: dict[str, Any]) -> float:
    r = _single(client, "weaning", _with_norepinephrine(rate))
    assert r.status_code == 200, r.data
    return float(r.get_json()["derived"]["vis_24h"])


def test_each_salt_converts_with_its_own_factor(client: FlaskClient) -> None:
    from service.core.kinds.weaning import NOREPINEPHRINE_SALTS

    rate = {"value": 0.2, "unit": "ug/kg/min"}
    base = _vis_24h(client, {**rate, "salt": "base"})
    anhydrous = _vis_24h(client, {**rate, "salt": "bitartrate_anhydrous"})
    monohydrate = _vis_24h(client, {**rate, "salt": "bitartrate_monohydrate"})
    assert math.isclose(base, 20.0)
    # Molar masses: base 169.18, bitartrate 319.27 (anhydrous), 337.29 (monohydrate).
    assert math.isclose(base / anhydrous, 319.27 / 169.18, rel_tol=1e-3)
    assert math.isclose(base / monohydrate, 337.29 / 169.18, rel_tol=1e-3)
    assert (
        NOREPINEPHRINE_SALTS["bitartrate_monohydrate"]
        > NOREPINEPHRINE_SALTS["bitartrate_anhydrous"]
    )


def test_an_ambiguous_salt_is_refused_with_the_allowed_ones(client: FlaskClient) -> None:
    inputs = _with_norepinephrine({"value": 0.2, "unit": "ug/kg/min", "salt": "bitartrate"})
    for r in (_single(client, "weaning", inputs), _batch(client, "weaning", inputs)):
        assert r.status_code == 422, r.data
        (error,) = r.get_json()["errors"]
        assert error["path"].endswith("norepinephrine.salt")
        assert "bitartrate_monohydrate" in error["allowed"]
        assert "bitartrate_anhydrous" in error["allowed"]
