"""Issue 19.4: nothing a caller sends may amplify. A body of unknown keys used to return an error
about seven times its own size (every key listed with its message and rule). Errors are listed
up to MAX_LISTED_ERRORS, `errors_omitted` says how many more there were, and an object with
more unknown members than can be listed is refused without validating its fields.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.errors import MAX_LISTED_ERRORS
from tests.cds.fhir import cds_request, weaning_prefetch
from tests.contract.spec import assert_matches_spec
from tests.factories import ICH_INPUTS, WEANING_INPUTS

UNKNOWN = 4000  # ~40 kB of keys: under the tests' 64 KiB body limit


def unknown_keys(n: int = UNKNOWN, prefix: str = "k") -> dict[str, int]:
    return {f"{prefix}{i}": 0 for i in range(n)}


def post(client: FlaskClient, path: str, body: Any) -> Any:
    raw = json.dumps(body).encode()
    r = client.post(path, data=raw, content_type="application/json")
    assert r.mimetype == "application/problem+json"
    problem = r.get_json()
    print(f"\n{path}: {len(raw)} bytes in -> {r.status_code}, {len(r.data)} bytes out")
    return r, problem, raw


def oip_body(**extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "apache_ii", "shape": [1], "datatype": "INT64", "data": [22]},
            {"name": "vis_0h", "shape": [1], "datatype": "FP64", "data": [40]},
            {"name": "vis_24h", "shape": [1], "datatype": "FP64", "data": [12]},
            {
                "name": "lactate_24h",
                "shape": [1],
                "datatype": "FP64",
                "data": [2.8],
                "parameters": {"unit": "mmol/L"},
            },
        ],
        **extra,
    }


CASES = [
    pytest.param("/v1/models/weaning/predict", {"inputs": WEANING_INPUTS, **unknown_keys()}, 422, "", id="v1-top"),
    pytest.param("/v1/models/ich/predict", {"inputs": {**ICH_INPUTS, **unknown_keys()}}, 422, "inputs.", id="v1-inputs"),
    pytest.param("/v1/models/weaning/predict/batch", {"patients": [{"inputs": WEANING_INPUTS, **unknown_keys()}]}, 422, "patients.0.", id="batch"),
    pytest.param("/v2/models/weaning/infer", oip_body(**unknown_keys()), 422, "", id="oip"),
    pytest.param("/cds-services/ecmo-weaning-risk", cds_request(weaning_prefetch(), context={"userId": "Practitioner/x", "patientId": "p", **unknown_keys()}), 400, "context.", id="cds"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "prefix"), CASES)
def test_an_error_lists_at_most_the_cap_and_counts_the_rest(
    client: FlaskClient, path: str, body: Any, status: int, prefix: str
) -> None:
    r, problem, raw = post(client, path, body)
    assert r.status_code == status
    assert len(problem["errors"]) == MAX_LISTED_ERRORS
    assert problem["errors_omitted"] == UNKNOWN - MAX_LISTED_ERRORS
    assert {e["rule"] for e in problem["errors"]} == {"unknown_field"}
    assert all(e["path"].startswith(prefix + "k") for e in problem["errors"])
    assert len(r.data) < len(raw) / 2
    template = path.replace("/weaning/", "/{name}/").replace("/ich/", "/{name}/")
    assert_matches_spec(r, template.replace("ecmo-weaning-risk", "{service_id}"), "post")


def test_a_batch_of_patients_each_with_unknown_keys_shares_one_cap(client: FlaskClient) -> None:
    patients = [{"inputs": WEANING_INPUTS, **unknown_keys(60, f"p{i}_")} for i in range(50)]
    r, problem, raw = post(client, "/v1/models/weaning/predict/batch", {"patients": patients})
    assert r.status_code == 422
    assert len(problem["errors"]) == MAX_LISTED_ERRORS
    assert problem["errors_omitted"] == 50 * 60 - MAX_LISTED_ERRORS
    assert len(r.data) < len(raw) / 2


def test_an_object_with_too_many_unknown_members_is_not_validated_further(
    client: FlaskClient,
) -> None:
    inputs = {**WEANING_INPUTS, "apache_ii": "22", **unknown_keys()}
    r, problem, _ = post(client, "/v1/models/weaning/predict", {"inputs": inputs})
    assert r.status_code == 422
    assert "inputs.apache_ii" not in {e["path"] for e in problem["errors"]}


def test_a_few_unknown_keys_are_all_listed_with_the_other_errors(client: FlaskClient) -> None:
    inputs = {**WEANING_INPUTS, "apache_ii": "22", **unknown_keys(3)}
    r, problem, _ = post(client, "/v1/models/weaning/predict", {"inputs": inputs})
    assert r.status_code == 422
    assert {e["path"] for e in problem["errors"]} == {
        "inputs.apache_ii",
        "inputs.k0",
        "inputs.k1",
        "inputs.k2",
    }
    assert "errors_omitted" not in problem


@pytest.mark.parametrize("member", ["inputs", "outputs"])
def test_an_oip_tensor_list_longer_than_any_model_takes_is_refused_before_its_items(
    client: FlaskClient, member: str
) -> None:
    body = oip_body()
    body[member] = [{"name": f"t{i}", "bogus": i} for i in range(1000)]
    r, problem, raw = post(client, "/v2/models/weaning/infer", body)
    assert r.status_code == 422
    assert [(e["path"], e["rule"]) for e in problem["errors"]] == [(member, "length")]


def test_cds_feedback_longer_than_its_limit_is_refused_before_its_items(
    client: FlaskClient,
) -> None:
    body = {"feedback": [{"bogus": i} for i in range(2000)]}
    r, problem, raw = post(client, "/cds-services/ecmo-weaning-risk/feedback", body)
    assert r.status_code == 400
    assert [(e["path"], e["rule"]) for e in problem["errors"]] == [("feedback", "length")]


def test_a_very_long_unknown_key_is_not_echoed_whole(client: FlaskClient) -> None:
    key = "x" * 50_000
    r, problem, raw = post(client, "/v1/models/weaning/predict", {"inputs": WEANING_INPUTS, key: 1})
    assert r.status_code == 422
    assert len(problem["errors"][0]["path"]) <= 256
    assert len(r.data) < 2_000
