"""VIS from MedicationAdministration infusion rates and FFP from transfusions (issue 15, item 6).

The realistic records are tests/cds/ehr/weaning_patient_{de,us}.json and ich_patient_{de,us}.json;
each test here changes one thing in them and checks what the service answers: a card with the
JSON API's probability, or a 412 naming what could not be determined (never a guess).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.cds import fhir
from tests.cds.test_ehr_examples import ANCHOR, EHR, SAME_PATIENT, SAME_WEANING_PATIENT, moved

WEANING = "/cds-services/ecmo-weaning-risk"
ICH = "/cds-services/ecmo-ich-risk"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture(scope="module")
def shipped() -> FlaskClient:
    return create_app(Settings()).test_client()  # shipped models and mapping files


def record(name: str) -> dict[str, Any]:
    body: dict[str, Any] = moved(json.loads((EHR / name).read_text()), datetime.now(UTC) - ANCHOR)
    return body


def resources(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in body["prefetch"][key]["entry"]]


def by_id(body: dict[str, Any], key: str, rid: str) -> dict[str, Any]:
    return next(r for r in resources(body, key) if r["id"] == rid)


def probability(r: Any) -> float:
    assert r.status_code == 200, r.get_json()
    return float(r.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"])


def json_api(client: FlaskClient, model: str, inputs: dict[str, Any]) -> float:
    r = client.post(f"/v1/models/{model}/predict", json={"inputs": inputs})
    assert r.status_code == 200, r.get_json()
    return float(r.get_json()["probability"])


def missing(r: Any) -> list[tuple[str, str]]:
    assert r.status_code == 412, r.get_json()
    return [(e["path"], e["rule"]) for e in r.get_json()["errors"]]


# ---- VIS from infusion rates


def test_a_charted_vis_takes_precedence_over_the_administrations(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    body["prefetch"]["vis"] = fhir.bundle(
        fhir.observation(fhir.LOCAL, "vis-0h", 40, "{score}", hours_ago=39),
        fhir.observation(fhir.LOCAL, "vis-24h", 12, "{score}", hours_ago=15),
    )
    for r in resources(body, "vis"):
        r["subject"] = {"reference": "Patient/us-icu-4711"}
    charted = {k: v for k, v in SAME_WEANING_PATIENT.items() if not k.startswith("infusions")}
    expected = json_api(shipped, "weaning", {**charted, "vis_0h": 40, "vis_24h": 12})
    assert probability(shipped.post(WEANING, json=body)) == pytest.approx(expected, rel=1e-9)


def test_without_an_ecmo_procedure_the_vis_is_missing_not_guessed(shipped: FlaskClient) -> None:
    body = record("weaning_patient_de.json")
    body["prefetch"]["ecmo"]["entry"] = [
        e for e in body["prefetch"]["ecmo"]["entry"] if e["resource"]["id"] != "ecmo-1"
    ]
    r = shipped.post(WEANING, json=body)
    assert ("prefetch.ecmo", "missing") in missing(r)
    assert "ECMO start" in r.get_json()["detail"]


def test_the_24_h_point_must_have_come(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    start = datetime.now(UTC) - timedelta(hours=10)
    by_id(body, "ecmo", "ecmo-1")["performedPeriod"]["start"] = start.isoformat()
    assert ("prefetch.vasoactives", "not_yet") in missing(shipped.post(WEANING, json=body))


def test_a_rate_per_patient_without_a_body_weight_is_412(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")  # epinephrine in ug/min, vasopressin in [U]/min
    body["prefetch"]["weight"]["entry"] = []
    r = shipped.post(WEANING, json=body)
    assert ("prefetch.weight", "requires_body_weight") in missing(r)
    message = r.get_json()["errors"][0]["message"]
    assert "epinephrine 8 ug/min" in message and "vasopressin 0.02 [U]/min" in message


def test_rates_per_kg_need_no_body_weight(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    body["prefetch"]["weight"]["entry"] = []
    by_id(body, "vasoactives", "ma-epi-1")["dosage"]["rateQuantity"].update(
        value=0.1, code="ug/kg/min"
    )
    by_id(body, "vasoactives", "ma-vas-1")["dosage"]["rateQuantity"].update(
        value=0.00025, code="[U]/kg/min"
    )
    inputs = {k: v for k, v in SAME_WEANING_PATIENT.items() if k != "body_weight"}
    assert probability(shipped.post(WEANING, json=body)) == pytest.approx(
        json_api(shipped, "weaning", inputs), rel=1e-9
    )


def test_a_pump_rate_in_ml_per_hour_is_412_naming_the_element(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    by_id(body, "vasoactives", "ma-nor-2")["dosage"]["rateQuantity"].update(value=7.5, code="mL/h")
    errors = missing(shipped.post(WEANING, json=body))
    # listed with the other source that had nothing: no VIS is charted
    assert errors == [
        ("prefetch.vis", "missing"),
        ("prefetch.vasoactives.entry[1].resource.dosage.rateQuantity", "unit"),
    ]


def test_norepinephrine_coded_without_its_salt_is_412(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    by_id(body, "vasoactives", "ma-nor-2")["medicationCodeableConcept"] = {
        "coding": [
            {
                "system": fhir.SNOMED,
                "code": "111130009",
                "display": "Product containing norepinephrine (medicinal product)",
            }
        ]
    }
    errors = missing(shipped.post(WEANING, json=body))
    assert ("prefetch.vasoactives.entry[1].resource.medication", "unknown_salt") in errors


def test_a_paginated_administration_bundle_is_412(shipped: FlaskClient) -> None:
    body = record("weaning_patient_de.json")
    body["prefetch"]["vasoactives"]["link"].append(
        {"relation": "next", "url": "https://kis.klinikum.example.de/fhir?page=2"}
    )
    assert ("prefetch.vasoactives", "incomplete") in missing(shipped.post(WEANING, json=body))


def test_a_medication_reference_not_in_the_bundle_is_412(shipped: FlaskClient) -> None:
    body = record("weaning_patient_de.json")  # MII style: Medications _include'd
    entries = body["prefetch"]["vasoactives"]["entry"]
    body["prefetch"]["vasoactives"]["entry"] = [
        e for e in entries if e["resource"]["resourceType"] != "Medication"
    ]
    errors = missing(shipped.post(WEANING, json=body))
    assert ("prefetch.vasoactives", "medication_unresolved") in errors


def test_a_stopped_infusion_no_longer_counts_and_a_bolus_never(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    # dobutamine stopped 6 h before the 24-h point; add an epinephrine bolus at 24 h
    bolus = copy.deepcopy(by_id(body, "vasoactives", "ma-epi-bolus"))
    bolus["id"] = "ma-epi-bolus-2"
    start = datetime.fromisoformat(by_id(body, "ecmo", "ecmo-1")["performedPeriod"]["start"])
    bolus["effectiveDateTime"] = (start + timedelta(hours=24)).isoformat()
    body["prefetch"]["vasoactives"]["entry"].append({"resource": bolus})
    assert probability(shipped.post(WEANING, json=body)) == pytest.approx(
        json_api(shipped, "weaning", SAME_WEANING_PATIENT), rel=1e-9
    )


def test_two_infusions_of_one_drug_at_once_are_added_up(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    second = copy.deepcopy(by_id(body, "vasoactives", "ma-nor-2"))
    second["id"] = "ma-nor-3"
    second["dosage"]["rateQuantity"]["value"] = 0.05
    body["prefetch"]["vasoactives"]["entry"].append({"resource": second})
    inputs = copy.deepcopy(SAME_WEANING_PATIENT)
    inputs["infusions_24h"]["norepinephrine"]["value"] = 0.2
    assert probability(shipped.post(WEANING, json=body)) == pytest.approx(
        json_api(shipped, "weaning", inputs), rel=1e-9
    )


def test_an_entered_in_error_infusion_does_not_count(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    wrong = copy.deepcopy(by_id(body, "vasoactives", "ma-nor-2"))
    wrong.update(id="ma-nor-x", status="entered-in-error")
    wrong["dosage"]["rateQuantity"]["value"] = 2.5
    body["prefetch"]["vasoactives"]["entry"].append({"resource": wrong})
    assert probability(shipped.post(WEANING, json=body)) == pytest.approx(
        json_api(shipped, "weaning", SAME_WEANING_PATIENT), rel=1e-9
    )


# ---- FFP from transfusions


def test_ffp_transfusions_in_the_window_are_summed_from_the_dose(shipped: FlaskClient) -> None:
    body = record("ich_patient_us.json")
    old = copy.deepcopy(by_id(body, "transfusions", "transfusion-1"))
    old["id"] = "transfusion-old"
    old["effectivePeriod"] = {
        "start": (datetime.now(UTC) - timedelta(days=9)).isoformat(),
        "end": (datetime.now(UTC) - timedelta(days=9) + timedelta(minutes=30)).isoformat(),
    }
    body["prefetch"]["transfusions"]["entry"].append({"resource": old})  # outside 7 days
    assert probability(shipped.post(ICH, json=body)) == json_api(shipped, "ich", SAME_PATIENT)


def test_no_transfusion_and_no_ffp_observation_is_0_ml(shipped: FlaskClient) -> None:
    body = record("ich_patient_de.json")
    body["prefetch"]["transfusions"]["entry"] = []
    none = {**SAME_PATIENT, "ffp_volume": {"value": 0, "unit": "mL"}}
    assert probability(shipped.post(ICH, json=body)) == json_api(shipped, "ich", none)
    body["prefetch"]["transfusions"] = None
    body["prefetch"]["ffp"] = None
    assert probability(shipped.post(ICH, json=body)) == json_api(shipped, "ich", none)


def test_a_local_ffp_observation_still_works_when_no_transfusion_is_recorded(
    shipped: FlaskClient,
) -> None:
    body = record("ich_patient_de.json")
    body["prefetch"]["transfusions"]["entry"] = []
    volume = fhir.observation(fhir.LOCAL, "ffp-volume", 550, "mL", hours_ago=20)
    volume["subject"] = {"reference": "Patient/mii-icu-0815"}
    body["prefetch"]["ffp"] = fhir.bundle(volume)
    assert probability(shipped.post(ICH, json=body)) == json_api(shipped, "ich", SAME_PATIENT)


def test_0_ml_is_not_concluded_while_the_transfusions_are_unknown(shipped: FlaskClient) -> None:
    body = record("ich_patient_us.json")
    del body["prefetch"]["transfusions"]  # not prefetched, and no FHIR server to ask
    body["prefetch"]["ffp"]["entry"] = []
    assert ("prefetch.transfusions", "missing") in missing(shipped.post(ICH, json=body))


def test_a_transfusion_in_units_is_refused_without_ml_per_unit(shipped: FlaskClient) -> None:
    body = record("ich_patient_us.json")
    by_id(body, "transfusions", "transfusion-1")["dosage"]["dose"].update(
        value=1, code="{unit}", unit="unit"
    )
    r = shipped.post(ICH, json=body)
    assert r.status_code == 400
    assert r.get_json()["errors"][0]["path"] == (
        "prefetch.transfusions.entry[0].resource.dosage.dose.code"
    )


def test_rxnorm_codes_of_other_drugs_are_not_read_as_vis_drugs(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")
    heparin = by_id(body, "vasoactives", "ma-hep-1")
    assert heparin["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
    assert probability(shipped.post(WEANING, json=body)) == pytest.approx(
        json_api(shipped, "weaning", SAME_WEANING_PATIENT), rel=1e-9
    )


def test_a_rate_beyond_the_bounds_is_400_at_its_element(shipped: FlaskClient) -> None:
    body = record("weaning_patient_us.json")  # norepinephrine: hard bound 3 ug/kg/min
    by_id(body, "vasoactives", "ma-nor-2")["dosage"]["rateQuantity"]["value"] = 5
    r = shipped.post(WEANING, json=body)
    assert r.status_code == 400, r.get_json()
    assert [e["path"] for e in r.get_json()["errors"]] == [
        "prefetch.vasoactives.entry[1].resource.dosage.rateQuantity.value"
    ]


def test_an_observation_without_a_code_is_not_read_as_an_unresolved_medication(
    shipped: FlaskClient,
) -> None:
    body = record("ich_patient_us.json")
    uncoded = copy.deepcopy(by_id(body, "platelets", "plt-3"))
    del uncoded["code"]
    uncoded["id"] = "plt-uncoded"
    body["prefetch"]["platelets"]["entry"].append({"resource": uncoded})
    assert probability(shipped.post(ICH, json=body)) == pytest.approx(
        json_api(shipped, "ich", SAME_PATIENT), rel=1e-9
    )
