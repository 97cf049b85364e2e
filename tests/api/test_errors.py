"""Invalid payloads each get their documented status and a field-level message, in one shape."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.exceptions import default_exceptions

from service.api.errors import PROBLEM_JSON
from tests.factories import ICH_INPUTS, WEANING_INPUTS

ERROR_KEYS = {"type", "title", "status", "detail", "code", "errors", "request_id"}


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.data
    assert r.mimetype == PROBLEM_JSON
    body: dict[str, Any] = r.get_json()
    assert ERROR_KEYS <= set(body) and body["status"] == status
    return body


def paths(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["path"], e["rule"]) for e in body["errors"]}


def test_missing_field(client: FlaskClient) -> None:
    inputs = {k: v for k, v in WEANING_INPUTS.items() if k != "apache_ii"}
    body = problem(client.post("/v1/models/weaning/predict", json={"inputs": inputs}), 422)
    assert paths(body) == {("inputs.apache_ii", "required")}


def test_out_of_bounds_value_names_range_and_unit(client: FlaskClient) -> None:
    inputs = {**WEANING_INPUTS, "lactate_24h": {"value": 400, "unit": "mg/dL"}}
    body = problem(client.post("/v1/models/weaning/predict", json={"inputs": inputs}), 422)
    (err,) = body["errors"]
    assert err["path"] == "inputs.lactate_24h.value" and err["rule"] == "range"
    assert err["allowed"] == "0.1 to 30 mmol/L" and "400 mg/dL" in err["message"]


def test_unknown_unit(client: FlaskClient) -> None:
    inputs = {**ICH_INPUTS, "min_platelets": {"value": 80, "unit": "K"}}
    body = problem(client.post("/v1/models/ich/predict", json={"inputs": inputs}), 422)
    assert paths(body) == {("inputs.min_platelets.unit", "unit")}


def test_missing_unit(client: FlaskClient) -> None:
    inputs = {**ICH_INPUTS, "min_platelets": {"value": 80}}
    body = problem(client.post("/v1/models/ich/predict", json={"inputs": inputs}), 422)
    assert paths(body) == {("inputs.min_platelets.unit", "required")}


def test_vis_0h_zero(client: FlaskClient) -> None:
    body = problem(
        client.post("/v1/models/weaning/predict", json={"inputs": {**WEANING_INPUTS, "vis_0h": 0}}),
        422,
    )
    assert paths(body) == {("inputs.vis_0h", "nonzero")}


def test_non_json_body(client: FlaskClient) -> None:
    body = problem(
        client.post("/v1/models/ich/predict", data="{not json", content_type="application/json"),
        400,
    )
    assert body["errors"][0]["rule"] == "json_syntax"


def test_wrong_content_type(client: FlaskClient) -> None:
    problem(client.post("/v1/models/ich/predict", data="inputs=1", content_type="text/plain"), 415)


def test_unknown_field(client: FlaskClient) -> None:
    body = problem(
        client.post("/v1/models/ich/predict", json={"inputs": {**ICH_INPUTS, "age": 50}}), 422
    )
    assert paths(body) == {("inputs.age", "unknown_field")}


def test_oversized_batch(client: FlaskClient) -> None:
    patients = [{"inputs": ICH_INPUTS}] * 51  # the test settings allow 50
    body = problem(client.post("/v1/models/ich/predict/batch", json={"patients": patients}), 413)
    assert paths(body) == {("patients", "max_items")}
    assert body["errors"][0]["allowed"] == "1 to 50 patients"


def test_oversized_body(client: FlaskClient) -> None:
    problem(
        client.post("/v1/models/ich/predict", data=b" " * 70_000, content_type="application/json"),
        413,
    )


def test_batch_errors_carry_the_patient_index(client: FlaskClient) -> None:
    bad = {**ICH_INPUTS, "gwr": 3.0}
    patients = [{"inputs": ICH_INPUTS}, {"inputs": bad}]
    body = problem(client.post("/v1/models/ich/predict/batch", json={"patients": patients}), 422)
    assert paths(body) == {("patients.1.inputs.gwr", "range")}


def test_both_vis_sources_is_ambiguous(client: FlaskClient) -> None:
    inputs = {**WEANING_INPUTS, "infusions_0h": {"dopamine": {"value": 5, "unit": "ug/kg/min"}}}
    body = problem(client.post("/v1/models/weaning/predict", json={"inputs": inputs}), 422)
    assert paths(body) == {("inputs.infusions_0h", "one_of_required")}


def test_unknown_model(client: FlaskClient) -> None:
    problem(client.post("/v1/models/sepsis/predict", json={"inputs": {}}), 404)


def test_method_not_allowed_lists_allowed_methods(client: FlaskClient) -> None:
    r = client.get("/v1/models/ich/predict")
    problem(r, 405)
    assert "POST" in r.headers["Allow"]


@pytest.mark.parametrize("code", sorted(c for c in default_exceptions if c >= 400))
def test_every_werkzeug_error_uses_the_one_shape(
    app: Any, code: int, allow_server_errors: None
) -> None:
    from flask import abort

    app.add_url_rule(f"/boom{code}", f"boom{code}", lambda: abort(code))
    r = app.test_client().get(f"/boom{code}")
    problem(r, code)


def test_unhandled_exception_is_a_500_without_traceback(
    app: Any, allow_server_errors: None
) -> None:
    def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_url_rule("/explode", "explode", explode)
    body = problem(app.test_client().get("/explode"), 500)
    assert "secret" not in str(body) and body["code"] == "internal_error"
