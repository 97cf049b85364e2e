"""Stroke history from Conditions as German and US EHRs record them (issue 15, item 1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.cds import fhir
from tests.cds.fhir import bundle, cds_request

ICH = "/cds-services/ecmo-ich-risk"
ICD10_GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"


def german_embolic_stroke(verification: str | None = "confirmed") -> dict[str, Any]:
    """As the MII core data set (Diagnose profile) records it: ICD-10-GM with version, plus SNOMED."""
    cond = fhir.condition(ICD10_GM, "I63.4", "Hirninfarkt durch Embolie zerebraler Arterien")
    cond["code"]["coding"][0]["version"] = "2026"
    cond["code"]["coding"].append(
        {"system": fhir.SNOMED, "code": "75543006", "display": "Cerebral embolism (disorder)"}
    )
    if verification is None:
        del cond["verificationStatus"]
    else:
        cond["verificationStatus"]["coding"][0]["code"] = verification
    return cond


def card(client: FlaskClient, *conditions: dict[str, Any]) -> dict[str, Any]:
    prefetch = fhir.ich_prefetch()
    prefetch["stroke"] = bundle(*conditions)
    r = client.post(ICH, data=json.dumps(cds_request(prefetch)), content_type="application/json")
    assert r.status_code == 200, r.get_json()
    result: dict[str, Any] = r.get_json()["cards"][0]
    return result


def json_api(client: FlaskClient, stroke: bool) -> float:
    inputs = {**fhir.ICH_INPUTS, "stroke_history": stroke}
    return float(
        client.post("/v1/models/ich/predict", json={"inputs": inputs}).get_json()["probability"]
    )


def probability(c: dict[str, Any]) -> float:
    return float(c["extension"]["ecmo-risk-service"]["probability"])


def test_a_german_icd10gm_and_snomed_stroke_counts(client: FlaskClient) -> None:
    assert probability(card(client, german_embolic_stroke())) == json_api(client, True)


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10_GM, "I63.4"),  # ICD-10-GM alone
        ("http://fhir.de/CodeSystem/dimdi/icd-10-gm", "I61.0"),  # the former DIMDI system
        (ICD10_GM, "I64"),  # stroke, not specified as haemorrhage or infarction
        (ICD10_CM, "I63.411"),  # ICD-10-CM subcode
        (fhir.SNOMED, "75543006"),  # SNOMED descendant of 230690007, by the shipped value set
        (fhir.SNOMED, "426107000"),  # acute lacunar infarction
        # from the VSAC Ischemic Stroke and Hemorrhagic Stroke expansions in the value set file
        (fhir.SNOMED, "195212005"),  # brainstem stroke syndrome
        (fhir.SNOMED, "230710000"),  # lobar cerebral hemorrhage
        (fhir.SNOMED, "276282001"),  # SAH from anterior communicating artery aneurysm
    ],
)
def test_each_national_icd10_variant_and_the_snomed_hierarchy_match(
    client: FlaskClient, system: str, code: str
) -> None:
    cond = fhir.condition(system, code, "stroke")
    assert probability(card(client, cond)) == json_api(client, True)


@pytest.mark.parametrize(
    "verification", ["entered-in-error", "refuted", "unconfirmed", "provisional", None]
)
def test_a_stroke_that_is_not_confirmed_does_not_count_and_the_card_says_what_counts(
    client: FlaskClient, verification: str | None
) -> None:
    c = card(client, german_embolic_stroke(verification))
    assert probability(c) == json_api(client, False)
    assert "counted: confirmed Conditions coded" in c["detail"]
    assert "icd-10-gm I60*" in c["detail"]
    assert f"verificationStatus {verification}" in c["detail"] or (
        verification is None and "without a verificationStatus" in c["detail"]
    )


def test_a_hypertension_condition_is_not_a_stroke(client: FlaskClient) -> None:
    cond = fhir.condition(fhir.SNOMED, "38341003", "Hypertensive disorder")
    assert probability(card(client, cond)) == json_api(client, False)
