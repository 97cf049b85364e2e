"""Open Inference Protocol (V2) face: same validation, units and model as the JSON API."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.factories import ICH_INPUTS, WEANING_INPUTS


def weaning_tensors(n: int = 2) -> list[dict[str, Any]]:
    return [
        {"name": "apache_ii", "shape": [n], "datatype": "INT32", "data": [22] * n},
        {"name": "vis_0h", "shape": [n], "datatype": "FP64", "data": [40.0] * n},
        {"name": "vis_24h", "shape": [n, 1], "datatype": "FP64", "data": [[12.0]] * n},
        {
            "name": "lactate_24h",
            "shape": [n],
            "datatype": "FP64",
            "data": [2800.0] * n,
            "parameters": {"unit": "umol/L"},
        },
    ]


def outputs(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {o["name"]: o["data"] for o in body["outputs"]}


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.data
    body: dict[str, Any] = r.get_json()
    assert r.mimetype == "application/problem+json" and body["error"] == body["detail"]
    return body


def test_server_metadata_and_health(client: FlaskClient) -> None:
    assert client.get("/v2").get_json()["name"] == "ecmo-risk-service"
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2/models/ich/ready").get_json() == {"name": "ich", "ready": True}


@pytest.mark.parametrize("name", ["weaning", "ich"])
def test_every_model_has_metadata(client: FlaskClient, name: str) -> None:
    meta = client.get(f"/v2/models/{name}").get_json()
    assert meta["name"] == name and len(meta["inputs"]) == 4 and len(meta["outputs"]) == 7


def test_model_metadata_lists_inputs_with_units(client: FlaskClient) -> None:
    meta = client.get("/v2/models/weaning").get_json()
    assert [i["name"] for i in meta["inputs"]] == ["apache_ii", "vis_0h", "vis_24h", "lactate_24h"]
    assert "mmol/L" in meta["inputs"][3]["parameters"]["unit"]
    assert meta["versions"] == ["1.0.0"]
    assert client.get("/v2/models/weaning/versions/1.0.0").status_code == 200


def test_infer_matches_the_json_api(client: FlaskClient) -> None:
    r = client.post("/v2/models/weaning/infer", json={"id": "req-1", "inputs": weaning_tensors()})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["id"] == "req-1" and body["model_name"] == "weaning"
    out = outputs(body)
    tensor = next(o for o in body["outputs"] if o["name"] == "contributions")
    features = tensor["parameters"]["features"]
    assert tensor["shape"] == [2, 4] and features == ["vrr", "apache_ii", "vis_24h", "lactate_24h"]
    single = client.post("/v1/models/weaning/predict", json={"inputs": WEANING_INPUTS}).get_json()
    expected = {c["feature"]: c["log_odds"] for c in single["contributions"]}
    for i, (p, lo, base) in enumerate(
        zip(out["probability"], out["log_odds"], out["baseline_log_odds"], strict=True)
    ):
        # Lactate is sent in umol/L here and in mmol/L to /v1: equal up to the conversion's rounding.
        assert p == pytest.approx(single["probability"], abs=1e-12)
        row = out["contributions"][4 * i : 4 * i + 4]
        assert row == pytest.approx([expected[f] for f in features], abs=1e-12)
        assert abs(base + math.fsum(row) - lo) < 1e-12
        assert abs(lo - math.log(p / (1 - p))) < 1e-9
    assert out["risk_band"] == [single["risk_band"]["name"]] * 2


def test_each_row_equals_the_json_api_whether_plain_or_not(client: FlaskClient) -> None:
    """Plain rows are scored as columns, rows with a warning per patient; both agree with /v1."""
    rows = [
        (22, 40.0, 12.0, 2.8),
        (70, 40.0, 12.0, 2.8),
        (22, 10.0, 50.0, 2.8),
        (5, 300.0, 1.0, 0.4),
    ]
    tensors = [
        {"name": "apache_ii", "shape": [4], "datatype": "INT64", "data": [r[0] for r in rows]},
        {"name": "vis_0h", "shape": [4], "datatype": "FP64", "data": [r[1] for r in rows]},
        {"name": "vis_24h", "shape": [4], "datatype": "FP64", "data": [r[2] for r in rows]},
        {
            "name": "lactate_24h",
            "shape": [4],
            "datatype": "FP64",
            "data": [r[3] for r in rows],
            "parameters": {"unit": "mmol/L"},
        },
    ]
    out = outputs(client.post("/v2/models/weaning/infer", json={"inputs": tensors}).get_json())
    for i, (apache, vis0, vis24, lactate) in enumerate(rows):
        inputs = {
            "apache_ii": apache,
            "vis_0h": vis0,
            "vis_24h": vis24,
            "lactate_24h": {"value": lactate, "unit": "mmol/L"},
        }
        single = client.post("/v1/models/weaning/predict", json={"inputs": inputs}).get_json()
        assert out["probability"][i] == single["probability"]
        assert out["risk_band"][i] == single["risk_band"]["name"]
        assert json.loads(out["warnings"][i]) == single["warnings"]


def test_requested_outputs_only(client: FlaskClient) -> None:
    tensors = [
        {"name": "gwr", "shape": [1], "datatype": "FP64", "data": [ICH_INPUTS["gwr"]]},
        {"name": "stroke_history", "shape": [1], "datatype": "BOOL", "data": [False]},
        {
            "name": "ffp_volume",
            "shape": [1],
            "datatype": "FP64",
            "data": [0.4],
            "parameters": {"unit": "L"},
        },
        {
            "name": "min_platelets",
            "shape": [1],
            "datatype": "FP64",
            "data": [80],
            "parameters": {"unit": "10*9/L"},
        },
    ]
    r = client.post(
        "/v2/models/ich/infer", json={"inputs": tensors, "outputs": [{"name": "probability"}]}
    )
    single = client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS}).get_json()
    assert [o["name"] for o in r.get_json()["outputs"]] == ["probability"]
    assert outputs(r.get_json())["probability"][0] == single["probability"]


def test_extrapolation_is_reported_per_patient(client: FlaskClient) -> None:
    tensors = weaning_tensors(2)
    tensors[0]["data"] = [22, 70]  # APACHE II 70: inside the hard bounds, outside the usual range
    body = client.post("/v2/models/weaning/infer", json={"inputs": tensors}).get_json()
    warnings = [json.loads(w) for w in outputs(body)["warnings"]]
    assert warnings[0] == []
    assert {w["code"] for w in warnings[1]} >= {"outside_usual_range", "extrapolation"}


def test_missing_unit_is_refused_not_assumed(client: FlaskClient) -> None:
    tensors = weaning_tensors()
    del tensors[3]["parameters"]
    body = problem(client.post("/v2/models/weaning/infer", json={"inputs": tensors}), 422)
    assert [(e["path"], e["rule"]) for e in body["errors"]] == [
        ("inputs.3.parameters.unit", "required")
    ]


def test_clinical_errors_point_at_the_tensor_element(client: FlaskClient) -> None:
    tensors = weaning_tensors(3)
    tensors[1]["data"] = [40.0, 0.0, 40.0]
    tensors[3]["parameters"] = {"unit": "mmol"}
    body = problem(client.post("/v2/models/weaning/infer", json={"inputs": tensors}), 422)
    paths = {(e["path"], e["rule"]) for e in body["errors"]}
    assert ("inputs.1.data.1", "nonzero") in paths
    assert ("inputs.3.parameters.unit", "unit") in paths


@pytest.mark.parametrize(
    ("change", "path", "rule"),
    [
        (
            lambda t: t.append({"name": "age", "shape": [2], "datatype": "FP64", "data": [1, 2]}),
            "inputs.4.name",
            "unknown_field",
        ),
        (lambda t: t.pop(0), "inputs", "required"),
        (lambda t: t[0].update(datatype="BYTES"), "inputs.0.datatype", "datatype"),
        (lambda t: t[1].update(data=[40.0]), "inputs.1.data", "shape"),
        (lambda t: t[1].update(data=["40", 40.0]), "inputs.1.data.0", "type"),
        (lambda t: t[1].update(data=[True, 40.0]), "inputs.1.data.0", "type"),
        (lambda t: t[2].update(shape=[2, 2]), "inputs.2.shape", "shape"),
        (lambda t: t[0].update(data=[22.5, 22]), "inputs.0.data.0", "type"),
    ],
)
def test_bad_tensors_are_refused_with_their_path(
    client: FlaskClient, change: Any, path: str, rule: str
) -> None:
    tensors = weaning_tensors()
    change(tensors)
    body = problem(client.post("/v2/models/weaning/infer", json={"inputs": tensors}), 422)
    assert (path, rule) in {(e["path"], e["rule"]) for e in body["errors"]}


def test_protocol_shape_errors_and_limits(client: FlaskClient) -> None:
    problem(client.post("/v2/models/weaning/infer", json={"inputs": []}), 422)
    problem(
        client.post("/v2/models/weaning/infer", json={"inputs": weaning_tensors(), "x": 1}), 422
    )
    problem(client.post("/v2/models/nope/infer", json={"inputs": weaning_tensors()}), 404)
    body = problem(
        client.post("/v2/models/weaning/infer", json={"inputs": weaning_tensors(51)}), 413
    )
    assert body["errors"][0]["rule"] == "max_items"
    problem(client.post("/v2/models/weaning/infer", data="{", content_type="application/json"), 400)


@pytest.mark.parametrize(
    "path", ["/v2/nothing", "/v2/models/ich/nothing", "/v2/models/ich/versions/1.0.0/x"]
)
def test_a_v2_path_that_does_not_exist_carries_the_protocols_error_member(
    client: FlaskClient, path: str
) -> None:
    problem(client.get(path), 404)


def test_a_json_body_sent_with_another_content_type_is_still_refused_on_v2(
    client: FlaskClient,
) -> None:
    r = client.post("/v2/models/ich/infer", data="{}", content_type="text/plain")
    assert problem(r, 415)["errors"][0]["rule"] == "content_type"


def test_a_unit_may_be_given_in_the_requests_parameters(client: FlaskClient) -> None:
    tensors = weaning_tensors()
    del tensors[3]["parameters"]
    body = {"inputs": tensors, "parameters": {"lactate_24h.unit": "umol/L"}}
    by_request = client.post("/v2/models/weaning/infer", json=body)
    by_input = client.post("/v2/models/weaning/infer", json={"inputs": weaning_tensors()})
    assert by_request.status_code == 200, by_request.data
    assert outputs(by_request.get_json()) == outputs(by_input.get_json())


def test_a_unit_given_twice_differently_is_refused(client: FlaskClient) -> None:
    body = {"inputs": weaning_tensors(), "parameters": {"lactate_24h.unit": "mmol/L"}}
    errors = problem(client.post("/v2/models/weaning/infer", json=body), 422)["errors"]
    assert errors[0]["path"] == "parameters.lactate_24h.unit" and errors[0]["rule"] == "conflict"
