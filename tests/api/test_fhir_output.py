"""Accept: application/fhir+json on the /v1 predict routes (validation against FHIR R4 is in
tests/fhirserver/test_riskassessment.py, which needs the FHIR test server)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.cds import fhir

FHIR = {"Accept": "application/fhir+json"}


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "application/json, application/fhir+json;q=0.5"]
)
def test_json_stays_the_default(client: FlaskClient, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    body = {"inputs": fhir.ICH_INPUTS, "patient_reference": "Patient/p-1"}
    r = client.post("/v1/models/ich/predict", json=body, headers=headers)
    assert r.status_code == 200
    assert r.content_type == "application/json"
    assert "probability" in r.get_json()
    assert "Accept" in r.headers.get_all("Vary")


def test_fhir_answer_is_a_risk_assessment(client: FlaskClient) -> None:
    body = {"inputs": fhir.ICH_INPUTS, "patient_reference": "Patient/p-1"}
    r = client.post("/v1/models/ich/predict", json=body, headers=FHIR)
    assert r.status_code == 200
    assert r.content_type == "application/fhir+json"
    ra = r.get_json()
    assert ra["resourceType"] == "RiskAssessment"
    assert ra["identifier"][0]["value"] == r.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({}, "patient_reference"),
        ({"patient_reference": "MRN 12345"}, "patient_reference"),
        (
            {"patient_reference": "Patient/p-1", "encounter_reference": "visit 7"},
            "encounter_reference",
        ),
    ],
)
def test_fhir_answer_needs_fhir_references(
    client: FlaskClient, extra: dict[str, str], path: str
) -> None:
    r = client.post(
        "/v1/models/ich/predict", json={"inputs": fhir.ICH_INPUTS, **extra}, headers=FHIR
    )
    assert r.status_code == 422
    assert r.content_type == "application/problem+json"
    assert [(e["path"], e["rule"]) for e in r.get_json()["errors"]] == [(path, "fhir_reference")]


def test_batch_fhir_answer_names_each_patient_without_a_reference(client: FlaskClient) -> None:
    patients = [
        {"inputs": fhir.ICH_INPUTS, "patient_reference": "Patient/a"},
        {"inputs": fhir.ICH_INPUTS},
    ]
    r = client.post("/v1/models/ich/predict/batch", json={"patients": patients}, headers=FHIR)
    assert r.status_code == 422
    assert [e["path"] for e in r.get_json()["errors"]] == ["patients.1.patient_reference"]
    ok = client.post(
        "/v1/models/ich/predict/batch", json={"patients": patients[:1]}, headers=FHIR
    ).get_json()
    assert ok["resourceType"] == "Bundle" and ok["type"] == "collection"
    assert ok["entry"][0]["resource"]["subject"] == {"reference": "Patient/a"}
    assert ok["entry"][0]["fullUrl"].startswith("urn:uuid:")
