"""CDS Hooks 2.0 endpoints through app.test_client(): discovery, patient-view calls with
prefetched FHIR R4 Bundles, error statuses, feedback and CORS. JWT verification is off here
(tests/cds/test_cds_auth.py turns it on)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.cds import fhir
from tests.cds.fhir import LOCAL, LOINC, bundle, cds_request, observation

WEANING = "/cds-services/ecmo-weaning-risk"
ICH = "/cds-services/ecmo-ich-risk"


def assert_no_nulls(value: Any, path: str = "") -> None:
    """CDS Hooks "Use of JSON": optional fields are omitted, never null, "", [] or {}."""
    if isinstance(value, dict):
        assert value, f"{path} is an empty object"
        for k, v in value.items():
            assert_no_nulls(v, f"{path}.{k}")
    elif isinstance(value, list):
        assert value, f"{path} is an empty array"
        for i, v in enumerate(value):
            assert_no_nulls(v, f"{path}[{i}]")
    else:
        assert value is not None and value != "", f"{path} is null or empty"


def assert_valid_card(card: dict[str, Any]) -> None:
    """The CDS Hooks 2.0 Card attributes this service promises."""
    assert set(card) <= {
        "uuid",
        "summary",
        "detail",
        "indicator",
        "source",
        "suggestions",
        "selectionBehavior",
        "overrideReasons",
        "links",
        "extension",
    }
    uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    assert card["overrideReasons"]
    for reason in card["overrideReasons"]:
        assert reason["code"] and reason["system"] and reason["display"]
    assert_no_nulls(card)


def call(client: FlaskClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def problem_paths(response: Any) -> list[str]:
    assert response.mimetype == "application/problem+json"
    return [e["path"] for e in response.get_json()["errors"]]


# --------------------------------------------------------------------------- discovery


def test_discovery_lists_one_patient_view_service_per_model_without_nulls(
    client: FlaskClient,
) -> None:
    r = client.get("/cds-services")
    assert r.status_code == 200
    services = r.get_json()["services"]
    assert sorted(s["id"] for s in services) == ["ecmo-ich-risk", "ecmo-weaning-risk"]
    for s in services:
        assert s["hook"] == "patient-view"
        assert s["title"] and s["description"]
        assert all("{{context.patientId}}" in q for q in s["prefetch"].values())
        assert_no_nulls(s)
    weaning = next(s for s in services if s["id"] == "ecmo-weaning-risk")
    assert "http://loinc.org|2524-7" in weaning["prefetch"]["lactate"]
    assert "http://loinc.org|59032-3" in weaning["prefetch"]["lactate"]


# --------------------------------------------------------------------------- cards


def test_weaning_card_probability_equals_the_json_api_for_the_same_patient(
    client: FlaskClient,
) -> None:
    r = call(client, WEANING, cds_request(fhir.weaning_prefetch()))
    assert r.status_code == 200, r.get_json()
    cards = r.get_json()["cards"]
    assert len(cards) == 1
    card = cards[0]
    assert_valid_card(card)
    api = client.post("/v1/models/weaning/predict", json={"inputs": fhir.WEANING_INPUTS})
    assert api.status_code == 200
    expected = api.get_json()
    assert card["extension"]["ecmo-risk-service"]["probability"] == expected["probability"]
    assert f"{expected['probability'] * 100:.0f}%" in card["summary"]
    assert expected["risk_band"]["name"] in card["summary"]


def test_ich_card_sums_ffp_across_units_takes_minimum_platelets_and_reads_icd10_stroke(
    client: FlaskClient,
) -> None:
    r = call(client, ICH, cds_request(fhir.ich_prefetch()))
    assert r.status_code == 200, r.get_json()
    card = r.get_json()["cards"][0]
    assert_valid_card(card)
    api = client.post("/v1/models/ich/predict", json={"inputs": fhir.ICH_INPUTS})
    assert card["extension"]["ecmo-risk-service"]["probability"] == api.get_json()["probability"]


def test_card_indicator_comes_from_the_manifest_band_and_source_links_the_model_card(
    client: FlaskClient, model_dir: Path
) -> None:
    card = call(client, ICH, cds_request(fhir.ich_prefetch())).get_json()["cards"][0]
    manifest = json.loads((model_dir / "ich" / "1.0.0" / "manifest.json").read_text())
    band = card["extension"]["ecmo-risk-service"]["risk_band"]
    expected = next(b["cds_indicator"] for b in manifest["risk_bands"] if b["name"] == band)
    assert card["indicator"] == expected
    assert card["source"]["label"] == "ich model 1.0.0"
    url = card["source"]["url"]
    assert url == "http://localhost/v1/models/ich/card?version=1.0.0"
    assert client.get(url.removeprefix("http://localhost")).status_code == 200


def test_card_detail_lists_factors_with_values_units_and_observation_times(
    client: FlaskClient,
) -> None:
    detail = call(client, WEANING, cds_request(fhir.weaning_prefetch())).get_json()["cards"][0][
        "detail"
    ]
    rows = [line for line in detail.splitlines() if line.startswith("| ") and "UTC" in line]
    assert len(rows) == 4  # vrr, apache_ii, vis_24h, lactate_24h
    lactate = next(r for r in rows if r.startswith("| lactate at 24 h"))
    assert "| 2.8 | mmol/L |" in lactate  # 25.2 mg/dL converted with the JSON API's unit table
    assert "25.2 mg/dL" in lactate
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", lactate)


def test_each_call_gets_fresh_card_uuids(client: FlaskClient) -> None:
    body = cds_request(fhir.weaning_prefetch())
    a = call(client, WEANING, body).get_json()["cards"][0]["uuid"]
    b = call(client, WEANING, body).get_json()["cards"][0]["uuid"]
    assert a != b


def test_shipped_models_answer_with_the_same_probability_as_the_json_api() -> None:
    app = create_app(Settings())  # the repository's models/ and shipped mapping files
    client = app.test_client()
    r = call(client, WEANING, cds_request(fhir.weaning_prefetch()))
    assert r.status_code == 200, r.get_json()
    api = client.post("/v1/models/weaning/predict", json={"inputs": fhir.WEANING_INPUTS})
    assert (
        r.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"]
        == (api.get_json()["probability"])
    )


# --------------------------------------------------------------------------- 412


def test_missing_prefetch_key_gives_412_naming_the_feature(client: FlaskClient) -> None:
    prefetch = fhir.weaning_prefetch()
    del prefetch["lactate"]
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 412
    body = r.get_json()
    assert body["code"] == "missing_clinical_data"
    assert "lactate at 24 h" in body["detail"]
    assert "does not query FHIR servers" in body["detail"]
    assert problem_paths(r) == ["prefetch.lactate"]


def test_null_prefetch_without_a_declared_meaning_gives_412_naming_the_feature(
    client: FlaskClient,
) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = None
    r = call(client, ICH, cds_request(prefetch))
    assert r.status_code == 412
    assert problem_paths(r) == ["prefetch.platelets"]
    assert "minimum platelet count" in r.get_json()["detail"]


def test_null_prefetch_for_stroke_and_ffp_means_none_recorded_and_gives_a_card(
    client: FlaskClient,
) -> None:
    """CDS Hooks 2.0: a client with no data for a prefetch key MUST send null. The shipped ich
    mapping declares what that means for stroke (no history) and FFP (0 mL in the window)."""
    prefetch = fhir.ich_prefetch()
    prefetch["stroke"] = None
    prefetch["transfusions"] = None  # FFP has two sources: no data in either
    prefetch["ffp"] = None
    r = call(client, ICH, cds_request(prefetch))
    assert r.status_code == 200, r.get_json()
    api = client.post(
        "/v1/models/ich/predict",
        json={
            "inputs": {
                **fhir.ICH_INPUTS,
                "stroke_history": False,
                "ffp_volume": {"value": 0, "unit": "mL"},
            }
        },
    )
    card = r.get_json()["cards"][0]
    assert card["extension"]["ecmo-risk-service"]["probability"] == api.get_json()["probability"]
    assert "prefetch 'stroke' was null (no data): no stroke Condition recorded" in card["detail"]
    assert "prefetch 'transfusions' was null (no data): no FFP administration" in card["detail"]


def test_operation_outcome_in_place_of_a_bundle_gives_412_naming_the_feature(
    client: FlaskClient,
) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = fhir.operation_outcome("upstream lab system timed out")
    r = call(client, ICH, cds_request(prefetch))
    assert r.status_code == 412
    error = r.get_json()["errors"][0]
    assert error["path"] == "prefetch.platelets"
    assert error["rule"] == "prefetch_failed"
    assert "minimum platelet count" in error["message"]
    assert "upstream lab system timed out" in error["message"]


def test_no_prefetch_gives_412_listing_every_missing_feature(client: FlaskClient) -> None:
    r = call(client, WEANING, cds_request(None))
    assert r.status_code == 412
    assert sorted(problem_paths(r)) == [
        "prefetch.apache",
        "prefetch.ecmo",  # the ECMO start, for the VIS from the administrations
        "prefetch.lactate",
        "prefetch.vasoactives",  # no charted VIS: the administrations at 0 h ...
        "prefetch.vasoactives",  # ... and at 24 h
        "prefetch.vis",
        "prefetch.vis",
    ]


def test_old_preliminary_and_undated_observations_are_not_used(client: FlaskClient) -> None:
    prefetch = fhir.weaning_prefetch()
    undated = observation(LOINC, "2524-7", 2.0, "mmol/L")
    del undated["effectiveDateTime"]
    prefetch["lactate"] = bundle(
        observation(LOINC, "2524-7", 2.0, "mmol/L", hours_ago=30),
        observation(LOINC, "2524-7", 2.0, "mmol/L", status="preliminary"),
        observation(LOINC, "2524-7", 2.0, "mmol/L", status="entered-in-error"),
        undated,
    )
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 412
    message = r.get_json()["errors"][0]["message"]
    assert "older than 24 h" in message
    assert "status preliminary" in message
    assert "status entered-in-error" in message
    assert "without an effective time" in message


def test_paginated_bundle_cannot_give_a_minimum_and_gives_412(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = bundle(observation(LOINC, "777-3", 95, "10*3/uL"), next_link=True)
    r = call(client, ICH, cds_request(prefetch))
    assert r.status_code == 412
    assert r.get_json()["errors"][0]["rule"] == "incomplete"


# --------------------------------------------------------------------------- 400


def test_unknown_unit_is_400_at_the_valuequantity_code(client: FlaskClient) -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["lactate"] = bundle(observation(LOINC, "2524-7", 2.0, "mEq/L"))
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 400
    error = r.get_json()["errors"][0]
    assert error["path"] == "prefetch.lactate.entry[0].resource.valueQuantity.code"
    assert error["rule"] == "unit"
    assert "mg/dL" in error["allowed"]


def test_unit_only_as_display_text_is_400_not_a_guess(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    obs = observation(LOINC, "777-3", 95, "10*3/uL")
    del obs["valueQuantity"]["code"]
    prefetch["platelets"] = bundle(obs)
    r = call(client, ICH, cds_request(prefetch))
    assert r.status_code == 400
    assert problem_paths(r) == ["prefetch.platelets.entry[0].resource.valueQuantity.code"]


def test_value_outside_clinical_bounds_is_400_at_the_fhir_value(client: FlaskClient) -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["lactate"] = bundle(observation(LOINC, "59032-3", 900, "mg/dL"))
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 400
    error = r.get_json()["errors"][0]
    assert error["path"] == "prefetch.lactate.entry[0].resource.valueQuantity.value"
    assert error["rule"] == "range"


def test_a_resource_other_than_a_bundle_is_400(client: FlaskClient) -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["apache"] = {"resourceType": "Patient", "id": "p-1"}
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 400
    assert problem_paths(r) == ["prefetch.apache.resourceType"]


def test_censored_lab_value_is_400(client: FlaskClient) -> None:
    prefetch = fhir.weaning_prefetch()
    obs = observation(LOINC, "2524-7", 0.3, "mmol/L")
    obs["valueQuantity"]["comparator"] = "<"
    prefetch["lactate"] = bundle(obs)
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 400
    assert problem_paths(r) == ["prefetch.lactate.entry[0].resource.valueQuantity.comparator"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"hookInstance": "not-a-uuid"}, "hookInstance"),
        ({"fhirServer": "not a url"}, "fhirServer"),
        ({"context": {"patientId": "p-1"}}, "context.userId"),
        ({"context": {"userId": "Device/x", "patientId": "p-1"}}, "context.userId"),
        ({"context": {"userId": "Practitioner/x"}}, "context.patientId"),
        ({"hook": None}, "hook"),
    ],
)
def test_request_fields_are_validated_with_400_and_their_path(
    client: FlaskClient, change: dict[str, Any], path: str
) -> None:
    r = call(client, WEANING, cds_request(fhir.weaning_prefetch(), **change))
    assert r.status_code == 400
    assert path in problem_paths(r)


def test_fhir_authorization_without_fhir_server_is_400(client: FlaskClient) -> None:
    body = cds_request(fhir.weaning_prefetch(), fhirAuthorization={"access_token": "x"})
    del body["fhirServer"]
    r = call(client, WEANING, body)
    assert r.status_code == 400
    assert problem_paths(r) == ["fhirServer"]


def test_unknown_top_level_fields_of_later_versions_are_ignored(client: FlaskClient) -> None:
    body = cds_request(fhir.weaning_prefetch(), hookVersion="1.0", someFutureField={"a": 1})
    assert call(client, WEANING, body).status_code == 200


def test_another_hook_is_400(client: FlaskClient) -> None:
    r = call(client, WEANING, cds_request(fhir.weaning_prefetch(), hook="order-sign"))
    assert r.status_code == 400
    assert problem_paths(r) == ["hook"]


def test_unknown_service_id_is_404(client: FlaskClient) -> None:
    r = call(client, "/cds-services/ecmo-wean-risk", cds_request(fhir.weaning_prefetch()))
    assert r.status_code == 404
    assert r.get_json()["code"] == "unknown_cds_service"


# --------------------------------------------------------------------------- mapping choices


def test_no_ffp_recorded_in_the_window_reads_as_zero_ml(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["ffp"] = bundle()
    r = call(client, ICH, cds_request(prefetch))
    assert r.status_code == 200
    api = client.post(
        "/v1/models/ich/predict",
        json={"inputs": {**fhir.ICH_INPUTS, "ffp_volume": {"value": 0, "unit": "mL"}}},
    )
    got = r.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"]
    assert got == api.get_json()["probability"]


def test_empty_condition_bundle_means_no_stroke_and_refuted_conditions_are_ignored(
    client: FlaskClient,
) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["stroke"] = bundle(
        fhir.condition(fhir.SNOMED, "230690007", "Cerebrovascular accident", "refuted")
    )
    r = call(client, ICH, cds_request(prefetch))
    api = client.post(
        "/v1/models/ich/predict", json={"inputs": {**fhir.ICH_INPUTS, "stroke_history": False}}
    )
    got = r.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"]
    assert got == api.get_json()["probability"]


def test_a_hospital_mapping_directory_replaces_the_shipped_codes(
    model_dir: Path, tmp_path: Path
) -> None:
    from importlib import resources

    source = resources.files("service.cds_mappings") / "weaning.json"
    doc = json.loads(source.read_text("utf-8"))
    site = "https://fhir.hospital.example/CodeSystem/icu"
    doc["prefetch"]["vis"] = (
        f"Observation?patient={{{{context.patientId}}}}&code={site}|VIS0,{site}|VIS24"
    )
    for f in doc["features"]:
        if f["input"] in ("vis_0h", "vis_24h"):
            f["codes"] = [{"system": site, "code": "VIS0" if f["input"] == "vis_0h" else "VIS24"}]
    (tmp_path / "weaning.json").write_text(json.dumps(doc))
    client = create_app(Settings(model_dir=model_dir, fhir_mapping_dir=tmp_path)).test_client()
    services = client.get("/cds-services").get_json()["services"]
    assert [s["id"] for s in services] == ["ecmo-weaning-risk"]
    prefetch = fhir.weaning_prefetch()
    prefetch["vis"] = bundle(
        observation(site, "VIS0", 40, "{score}", hours_ago=30),
        observation(site, "VIS24", 12, "{score}", hours_ago=6),
    )
    assert call(client, WEANING, cds_request(prefetch)).status_code == 200
    assert call(client, WEANING, cds_request(fhir.weaning_prefetch())).status_code == 412


def test_local_vis_codes_in_the_shipped_mapping_are_placeholders_that_still_work(
    client: FlaskClient,
) -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["vis"] = bundle(
        observation(LOCAL, "vis-0h", 40, None, hours_ago=30, valueQuantity={"value": 40}),
        observation(LOCAL, "vis-24h", 12, "{score}", hours_ago=6),
    )
    assert call(client, WEANING, cds_request(prefetch)).status_code == 200


# --------------------------------------------------------------------------- feedback


def feedback_body(outcome: str = "overridden") -> dict[str, Any]:
    item: dict[str, Any] = {
        "card": str(uuid.uuid4()),
        "outcome": outcome,
        "outcomeTimestamp": "2026-11-23T10:00:00Z",
    }
    if outcome == "overridden":
        item["overrideReason"] = {
            "reason": {
                "system": "urn:ecmo-risk-service:cds-override-reason",
                "code": "clinical-judgement",
                "display": "Clinical assessment differs from the prediction",
            },
            "userComment": "free text is accepted but not stored",
        }
    else:
        item["acceptedSuggestions"] = []
    return {"feedback": [item]}


def test_feedback_is_accepted_and_counted_by_service_and_outcome(client: FlaskClient) -> None:
    assert call(client, WEANING + "/feedback", feedback_body("overridden")).status_code == 200
    assert call(client, WEANING + "/feedback", feedback_body("overridden")).status_code == 200
    assert call(client, ICH + "/feedback", feedback_body("accepted")).status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (
        'ecmo_cds_feedback_total{outcome="overridden",service="ecmo-weaning-risk"} 2.0' in metrics
    )
    assert 'ecmo_cds_feedback_total{outcome="accepted",service="ecmo-ich-risk"} 1.0' in metrics
    assert "free text" not in metrics


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"outcome": "ignored"}, "feedback.0.outcome"),
        ({"outcome": "accepted", "overrideReason": None}, "feedback.0.acceptedSuggestions"),
        ({"outcomeTimestamp": "yesterday"}, "feedback.0.outcomeTimestamp"),
        ({"card": ""}, "feedback.0.card"),
    ],
)
def test_invalid_feedback_is_400(client: FlaskClient, item: dict[str, Any], path: str) -> None:
    body = feedback_body()
    body["feedback"][0].update(item)
    if item.get("overrideReason", 1) is None:
        del body["feedback"][0]["overrideReason"]
    r = call(client, WEANING + "/feedback", body)
    assert r.status_code == 400
    assert path in problem_paths(r)


def test_feedback_for_an_unknown_service_is_404(client: FlaskClient) -> None:
    assert call(client, "/cds-services/nope/feedback", feedback_body()).status_code == 404


# --------------------------------------------------------------------------- CORS


@pytest.mark.parametrize("path", ["/cds-services", WEANING, WEANING + "/feedback"])
def test_cors_preflight_is_answered_without_credentials(client: FlaskClient, path: str) -> None:
    r = client.options(
        path,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_cors_headers_are_on_errors_too(client: FlaskClient) -> None:
    r = call(client, WEANING, cds_request(None))
    assert r.status_code == 412
    assert r.headers["Access-Control-Allow-Origin"] == "*"


HOSTILE_PREFETCH: list[Any] = [
    [],
    "Bundle",
    {"resourceType": "OperationOutcome", "issue": 7},
    {"resourceType": "OperationOutcome", "issue": [{"details": "x"}, 3]},
    {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": {}}},
    {"resourceType": "Bundle", "type": "searchset", "entry": [1, {"resource": []}]},
    {"resourceType": "Bundle", "type": "searchset", "link": "next", "entry": []},
    bundle(observation(LOINC, "2524-7", 2.0, "mmol/L", status=["final"])),
    bundle(observation(LOINC, "2524-7", 2.0, "mmol/L", effectiveDateTime=20261123)),
    bundle(
        {
            k: v
            for k, v in observation(
                LOINC, "2524-7", 2.0, "mmol/L", effectivePeriod={"end": "2026-13-01"}
            ).items()
            if k != "effectiveDateTime"
        }
    ),
    bundle(observation(LOINC, "2524-7", 2.0, "mmol/L", valueQuantity=[1])),
    bundle(observation(LOINC, "2524-7", 2.0, ["mmol/L"])),
    bundle({"resourceType": "Observation", "id": "a", "code": {"coding": "x"}}),
    bundle(
        {
            "resourceType": "Observation",
            "id": "b",
            "code": {"coding": [{"system": LOINC, "code": 7}]},
        }
    ),
]


@pytest.mark.parametrize("value", HOSTILE_PREFETCH)
def test_hostile_prefetch_values_are_4xx_never_5xx(client: FlaskClient, value: Any) -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["lactate"] = value
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code in (400, 412), r.get_json()
    assert r.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("resource", "element"),
    [
        (observation(LOINC, "2524-7", 10**400, "mmol/L"), "valueQuantity.value"),
        (observation(LOINC, "2524-7", None, valueInteger=-(10**400)), "valueInteger"),
    ],
)
def test_a_number_beyond_double_range_is_422_at_its_element_as_on_every_protocol(
    client: FlaskClient, resource: dict[str, Any], element: str
) -> None:
    """Refused while the body is read (service/api/body.py), before any FHIR mapping."""
    prefetch = fhir.weaning_prefetch()
    prefetch["lactate"] = bundle(resource)
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 422, r.get_json()
    assert problem_paths(r) == [f"prefetch.lactate.entry.0.resource.{element}"]


def test_rule_errors_point_at_the_fhir_element_they_came_from(client: FlaskClient) -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["apache"] = bundle(observation(LOINC, "9264-3", 80, "{score}"))
    prefetch["vis"] = bundle(
        observation(LOCAL, "vis-0h", None, hours_ago=30, valueInteger=0),
        observation(LOCAL, "vis-24h", 12, "{score}", hours_ago=6),
    )
    r = call(client, WEANING, cds_request(prefetch))
    assert r.status_code == 400
    assert r.get_json()["code"] == "invalid_clinical_data"
    assert sorted((e["path"], e["rule"]) for e in r.get_json()["errors"]) == [
        ("prefetch.apache.entry[0].resource.valueQuantity.value", "range"),
        ("prefetch.vis.entry[0].resource.valueInteger", "nonzero"),
    ]


def test_a_sum_out_of_bounds_is_reported_at_the_prefetch_key(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["ffp"] = bundle(
        observation(LOCAL, "ffp-volume", 12, "L", hours_ago=40),
        observation(LOCAL, "ffp-volume", 9, "L", hours_ago=10),
    )
    r = call(client, ICH, cds_request(prefetch))
    assert r.status_code == 400
    error = r.get_json()["errors"][0]
    assert (error["path"], error["rule"]) == ("prefetch.ffp", "range")
    assert "sum of 2 resources" in error["message"]
