"""Small CDS Hooks 2.0 conformance points (issue 15, item 7): feedback extensions, another
patient's resources, and cards of a reference model. JWT typ: tests/cds/test_cds_auth.py."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.cds import fhir
from tests.cds.fhir import LOINC, bundle, cds_request, observation

WEANING = "/cds-services/ecmo-weaning-risk"
ICH = "/cds-services/ecmo-ich-risk"


def call(client: FlaskClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def probability(response: Any) -> float:
    assert response.status_code == 200, response.get_json()
    return float(response.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"])


def test_a_feedback_item_with_an_extension_member_is_accepted(client: FlaskClient) -> None:
    body = {
        "feedback": [
            {
                "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "urn:ecmo-risk-service:cds-override-reason",
                        "code": "clinical-judgement",
                    }
                },
                "outcomeTimestamp": "2026-11-23T10:00:00Z",
                "extension": {"com.example.ehr.feedback-source": {"screen": "icu-overview"}},
            }
        ]
    }
    r = call(client, WEANING + "/feedback", body)
    assert r.status_code == 200, r.get_json()


def test_resources_about_another_patient_are_ignored_with_a_warning(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    prefetch = fhir.ich_prefetch()
    # Another patient's platelet count of 12 would be the minimum; it must not be used.
    stranger = observation(LOINC, "777-3", 12, "10*9/L", hours_ago=3)
    stranger["subject"] = {"reference": "https://ehr.example.org/fhir/Patient/p-2"}
    prefetch["platelets"]["entry"].append({"resource": stranger})
    with caplog.at_level(logging.WARNING):
        r = call(client, ICH, cds_request(prefetch))
    api = client.post("/v1/models/ich/predict", json={"inputs": fhir.ICH_INPUTS})
    assert probability(r) == api.get_json()["probability"]
    detail = r.get_json()["cards"][0]["detail"]
    assert "1 prefetched resource(s) about another patient" in detail
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any("another patient" in m for m in warnings)
    assert not any("p-2" in m or "p-1" in m for m in warnings)  # no identifiers in logs


def test_a_condition_about_another_patient_is_not_this_patients_history(
    client: FlaskClient,
) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["stroke"] = bundle(fhir.condition(fhir.ICD10, "I63.9", "Cerebral infarction"))
    prefetch["stroke"]["entry"][0]["resource"]["subject"] = {"reference": "Patient/p-2"}
    api = client.post(
        "/v1/models/ich/predict", json={"inputs": {**fhir.ICH_INPUTS, "stroke_history": False}}
    )
    assert probability(call(client, ICH, cds_request(prefetch))) == api.get_json()["probability"]


def test_cards_of_a_reference_model_say_it_is_not_for_clinical_decisions() -> None:
    client = create_app(Settings()).test_client()  # the shipped models: fitted on simulated data
    card = call(client, WEANING, cds_request(fhir.weaning_prefetch())).get_json()["cards"][0]
    assert "not for clinical decisions" in card["detail"].splitlines()[0]
    assert "not for clinical decisions" in card["source"]["label"]


def test_cards_of_a_model_not_fitted_on_simulated_data_carry_no_such_notice(
    client: FlaskClient,
) -> None:
    card = call(client, WEANING, cds_request(fhir.weaning_prefetch())).get_json()["cards"][0]
    assert "not for clinical decisions" not in card["detail"]
