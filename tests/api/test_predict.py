from __future__ import annotations

import math
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.factories import ICH_INPUTS, WEANING_INPUTS

CASES = [("weaning", WEANING_INPUTS), ("ich", ICH_INPUTS)]


def assert_additive(prediction: dict[str, Any]) -> None:
    total = prediction["baseline_log_odds"] + math.fsum(
        c["log_odds"] for c in prediction["contributions"]
    )
    p = prediction["probability"]
    assert abs(total - math.log(p / (1 - p))) < 1e-9
    assert abs(total - prediction["log_odds"]) < 1e-12


@pytest.mark.parametrize(("name", "inputs"), CASES)
def test_single_prediction_is_additive_and_names_the_model(
    client: FlaskClient, name: str, inputs: dict[str, Any]
) -> None:
    r = client.post(f"/v1/models/{name}/predict", json={"inputs": inputs})
    assert r.status_code == 200, r.json
    body = r.get_json()
    assert body["model"]["name"] == name and len(body["model"]["sha256"]) == 64
    assert 0 < body["probability"] < 1
    band = body["risk_band"]
    assert band["lower"] <= body["probability"] < band["upper"]
    assert len(body["contributions"]) == 4
    for c in body["contributions"]:
        assert c["direction"] == ("raises" if c["log_odds"] > 0 else "lowers")
    assert_additive(body)
    assert body["request_id"] == r.headers["X-Request-ID"]


@pytest.mark.parametrize(("name", "inputs"), CASES)
def test_batch_predictions_are_additive_and_match_single(
    client: FlaskClient, name: str, inputs: dict[str, Any]
) -> None:
    patients = [{"inputs": inputs, "patient_reference": f"Patient/{i}"} for i in range(3)]
    r = client.post(f"/v1/models/{name}/predict/batch", json={"patients": patients})
    assert r.status_code == 200, r.json
    preds = r.get_json()["predictions"]
    assert [p["patient_reference"] for p in preds] == ["Patient/0", "Patient/1", "Patient/2"]
    single = client.post(f"/v1/models/{name}/predict", json={"inputs": inputs}).get_json()
    for p in preds:
        assert_additive(p)
        assert p["probability"] == single["probability"]


MIXED_BATCH = {
    # Plain rows (scored as columns) beside rows the per-patient path takes: an unusual value,
    # an extrapolation, a winsorised VRR, another unit, infusion rates, grey/white HU.
    "weaning": [
        WEANING_INPUTS,
        {**WEANING_INPUTS, "lactate_24h": {"value": 25.2, "unit": "mg/dL"}},
        {**WEANING_INPUTS, "apache_ii": 60},
        {**WEANING_INPUTS, "vis_0h": 10, "vis_24h": 30},
        {**WEANING_INPUTS, "vis_0h": 300},
        {
            "apache_ii": 18,
            "lactate_24h": {"value": 3.1, "unit": "mmol/L"},
            "vis_0h": 35,
            "infusions_24h": {"norepinephrine": {"value": 0.05, "unit": "ug/kg/min"}},
        },
        {**WEANING_INPUTS, "body_weight": {"value": 80, "unit": "kg"}},
    ],
    "ich": [
        ICH_INPUTS,
        {**ICH_INPUTS, "ffp_volume": {"value": 1.2, "unit": "L"}},
        {**ICH_INPUTS, "min_platelets": {"value": 80000, "unit": "/uL"}},
        {**ICH_INPUTS, "min_platelets": {"value": 3, "unit": "10*9/L"}},
        {**ICH_INPUTS, "gwr": 0.9},
        {k: v for k, v in ICH_INPUTS.items() if k != "gwr"}
        | {"grey_matter_hu": 36.0, "white_matter_hu": 28.0},
        {**ICH_INPUTS, "stroke_history": True},
    ],
}


@pytest.mark.parametrize("name", ["weaning", "ich"])
def test_every_batch_item_equals_the_single_answer_for_that_patient(
    client: FlaskClient, name: str
) -> None:
    """Whichever path a batch row takes, its answer is the single route's, to the last bit."""
    patients = MIXED_BATCH[name]
    r = client.post(
        f"/v1/models/{name}/predict/batch", json={"patients": [{"inputs": i} for i in patients]}
    )
    assert r.status_code == 200, r.json
    items = r.get_json()["predictions"]
    assert len(items) == len(patients)
    warned = 0
    for inputs, item in zip(patients, items, strict=True):
        single = client.post(f"/v1/models/{name}/predict", json={"inputs": inputs}).get_json()
        del single["request_id"], single["model"]
        assert item == single
        assert_additive(item)
        warned += bool(item["warnings"])
    assert 0 < warned < len(patients)  # both kinds of row were exercised


def test_raw_infusion_rates_give_the_same_probability_as_the_vis_they_imply(
    client: FlaskClient,
) -> None:
    by_vis = {**WEANING_INPUTS, "vis_0h": 29.0, "vis_24h": 5.0}
    by_rates = {
        "apache_ii": WEANING_INPUTS["apache_ii"],
        "lactate_24h": WEANING_INPUTS["lactate_24h"],
        "body_weight": {"value": 176.37, "unit": "[lb_av]"},  # 80.0 kg
        "infusions_0h": {
            # 0.2 ug/kg/min of base (169.18 g/mol) as the anhydrous bitartrate (319.27 g/mol)
            "norepinephrine": {
                "value": 0.2 * 319.27 / 169.18,
                "unit": "ug/kg/min",
                "salt": "bitartrate_anhydrous",
            },
            "dobutamine": {"value": 24, "unit": "mg/h"},  # 5 ug/kg/min at 80 kg
            "vasopressin": {"value": 1.92, "unit": "U/h"},  # 0.0004 U/kg/min
        },
        "infusions_24h": {"milrinone": {"value": 0.5, "unit": "ug/kg/min"}},
    }
    a = client.post("/v1/models/weaning/predict", json={"inputs": by_vis}).get_json()
    b = client.post("/v1/models/weaning/predict", json={"inputs": by_rates}).get_json()
    assert b["derived"]["vis_0h"] == pytest.approx(29.0, rel=1e-4)
    assert b["derived"]["vis_24h"] == pytest.approx(5.0)
    assert b["probability"] == pytest.approx(a["probability"], rel=1e-4)


def test_exact_rates_give_exactly_the_same_probability(client: FlaskClient) -> None:
    by_vis = {**WEANING_INPUTS, "vis_0h": 30.0, "vis_24h": 10.0}
    by_rates = {
        "apache_ii": WEANING_INPUTS["apache_ii"],
        "lactate_24h": WEANING_INPUTS["lactate_24h"],
        "infusions_0h": {
            "norepinephrine": {"value": 0.25, "unit": "ug/kg/min"},
            "dopamine": {"value": 5, "unit": "ug/kg/min"},
        },
        "infusions_24h": {"epinephrine": {"value": 0.1, "unit": "ug/kg/min"}},
    }
    a = client.post("/v1/models/weaning/predict", json={"inputs": by_vis}).get_json()
    b = client.post("/v1/models/weaning/predict", json={"inputs": by_rates}).get_json()
    assert b["probability"] == pytest.approx(a["probability"], abs=1e-12)


def test_caller_references_are_echoed(client: FlaskClient) -> None:
    body = {
        "inputs": ICH_INPUTS,
        "patient_reference": "Patient/7",
        "encounter_reference": "Encounter/9",
        "correlation_id": "abc",
    }
    got = client.post("/v1/models/ich/predict", json=body).get_json()
    assert (got["patient_reference"], got["encounter_reference"], got["correlation_id"]) == (
        "Patient/7",
        "Encounter/9",
        "abc",
    )


def test_explicit_version_is_served(client: FlaskClient) -> None:
    r = client.post("/v1/models/ich/predict?version=1.0.0", json={"inputs": ICH_INPUTS})
    assert r.get_json()["model"]["version"] == "1.0.0"
    missing = client.post("/v1/models/ich/predict?version=7.0.0", json={"inputs": ICH_INPUTS})
    assert missing.status_code == 404 and missing.get_json()["code"] == "unknown_model"


def test_extrapolation_and_soft_bound_warnings_are_returned(client: FlaskClient) -> None:
    inputs = {**ICH_INPUTS, "ffp_volume": {"value": 9, "unit": "L"}}
    got = client.post("/v1/models/ich/predict", json={"inputs": inputs}).get_json()
    codes = {(w["path"], w["code"]) for w in got["warnings"]}
    assert ("ffp_volume.value", "outside_usual_range") in codes
    assert ("ffp_volume_ml", "extrapolation") in codes


def test_request_id_from_caller_is_kept_and_a_bad_one_replaced(client: FlaskClient) -> None:
    r = client.post(
        "/v1/models/ich/predict", json={"inputs": ICH_INPUTS}, headers={"X-Request-ID": "req-42"}
    )
    assert r.headers["X-Request-ID"] == "req-42" and r.get_json()["request_id"] == "req-42"
    r = client.post(
        "/v1/models/ich/predict",
        json={"inputs": ICH_INPUTS},
        headers={"X-Request-ID": "bad id\twith spaces"},
    )
    assert (
        r.headers["X-Request-ID"] != "bad id\twith spaces" and len(r.headers["X-Request-ID"]) == 32
    )
