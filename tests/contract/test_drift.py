"""A response that drifts from openapi.yaml fails assert_matches_spec: the check every API test,
every spec example and schemathesis' response_schema_conformance rely on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, Response

from tests.contract.spec import assert_matches_spec

WEANING = {
    "inputs": {
        "apache_ii": 22,
        "vis_0h": 40,
        "vis_24h": 12,
        "lactate_24h": {"value": 2.8, "unit": "mmol/L"},
    }
}


def predict(shipped_app: Flask) -> Any:
    with shipped_app.test_client() as client:
        return client.post("/v1/models/weaning/predict", json=WEANING)


def altered(response: Response, change: Any) -> Response:
    body = json.loads(response.get_data())
    change(body)
    return Response(json.dumps(body), status=response.status_code, headers=dict(response.headers))


def test_the_real_response_matches(shipped_app: Flask) -> None:
    assert_matches_spec(predict(shipped_app), "/v1/models/{name}/predict", "POST")


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(calibrated=True),  # a new top-level field
        lambda b: b["risk_band"].update(cds_indicator="info"),  # a new nested field
        lambda b: b["contributions"][0].update(z_score=1.0),  # a new field in an array item
        lambda b: b.update(prob=b.pop("probability")),  # a renamed field
        lambda b: b.pop("warnings"),  # a dropped field
        lambda b: b.update(probability="0.7"),  # a changed type
        lambda b: b["contributions"][0].update(direction="up"),  # a value outside an enum
    ],
    ids=["added", "added nested", "added in array", "renamed", "dropped", "retyped", "new enum"],
)
def test_a_response_field_change_not_in_the_spec_fails(shipped_app: Flask, change: Any) -> None:
    response = altered(predict(shipped_app), change)
    with pytest.raises(AssertionError, match="does not match openapi.yaml"):
        assert_matches_spec(response, "/v1/models/{name}/predict", "POST")


def test_an_undocumented_status_fails(shipped_app: Flask) -> None:
    response = predict(shipped_app)
    response.status_code = 418
    with pytest.raises(AssertionError, match="does not document"):
        assert_matches_spec(response, "/v1/models/{name}/predict", "POST")


def test_a_missing_header_fails(shipped_app: Flask) -> None:
    response = predict(shipped_app)
    del response.headers["Server-Timing"]
    with pytest.raises(AssertionError, match="Server-Timing"):
        assert_matches_spec(response, "/v1/models/{name}/predict", "POST")
