"""Every UCUM spelling of an accepted unit is accepted on every path (issue 15, item 3): UCUM's
liter is "l" or "L", so ml, mmol/l, 10*9/l are the accepted mL, mmol/L, 10*9/L. One unit table
(service.core.units) serves the JSON API, OIP and CDS Hooks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.core.units import DEFAULT_UNITS
from tests.cds import fhir
from tests.cds.fhir import LOCAL, LOINC, bundle, cds_request, observation
from tests.factories import ICH_INPUTS, WEANING_INPUTS

LOWER_L = {
    "ich": {
        **ICH_INPUTS,
        "ffp_volume": {"value": ICH_INPUTS["ffp_volume"]["value"], "unit": "ml"},
        "min_platelets": {"value": ICH_INPUTS["min_platelets"]["value"], "unit": "10*9/l"},
    },
    "weaning": {**WEANING_INPUTS, "lactate_24h": {"value": 2.8, "unit": "mmol/l"}},
}


@pytest.mark.parametrize("model", ["ich", "weaning"])
def test_json_api_accepts_the_lower_case_liter(client: FlaskClient, model: str) -> None:
    canonical = {"ich": ICH_INPUTS, "weaning": WEANING_INPUTS}[model]
    want = client.post(f"/v1/models/{model}/predict", json={"inputs": canonical}).get_json()
    got = client.post(f"/v1/models/{model}/predict", json={"inputs": LOWER_L[model]})
    assert got.status_code == 200, got.get_json()
    assert got.get_json()["probability"] == want["probability"]
    batch = client.post(
        f"/v1/models/{model}/predict/batch", json={"patients": [{"inputs": LOWER_L[model]}] * 3}
    )
    assert batch.status_code == 200, batch.get_json()
    assert {r["probability"] for r in batch.get_json()["predictions"]} == {want["probability"]}


def test_oip_accepts_the_lower_case_liter(client: FlaskClient) -> None:
    tensors = [
        {"name": "apache_ii", "shape": [2], "datatype": "INT32", "data": [22, 22]},
        {"name": "vis_0h", "shape": [2], "datatype": "FP64", "data": [40.0, 40.0]},
        {"name": "vis_24h", "shape": [2], "datatype": "FP64", "data": [12.0, 12.0]},
        {
            "name": "lactate_24h",
            "shape": [2],
            "datatype": "FP64",
            "data": [2.8, 2.8],
            "parameters": {"unit": "mmol/l"},
        },
    ]
    r = client.post("/v2/models/weaning/infer", json={"inputs": tensors})
    assert r.status_code == 200, r.get_json()
    single = client.post("/v1/models/weaning/predict", json={"inputs": WEANING_INPUTS}).get_json()
    probs = next(o["data"] for o in r.get_json()["outputs"] if o["name"] == "probability")
    assert probs == pytest.approx([single["probability"]] * 2, abs=1e-12)


def test_cds_accepts_the_lower_case_liter_in_value_quantity_code(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["ffp"] = bundle(
        observation(LOCAL, "ffp-volume", 250, "ml", hours_ago=40),
        observation(LOCAL, "ffp-volume", 0.15, "l", hours_ago=10),
    )
    prefetch["platelets"] = bundle(observation(LOINC, "777-3", 80, "10*9/l", hours_ago=2))
    r = client.post(
        "/cds-services/ecmo-ich-risk",
        data=json.dumps(cds_request(prefetch)),
        content_type="application/json",
    )
    assert r.status_code == 200, r.get_json()
    api = client.post("/v1/models/ich/predict", json={"inputs": fhir.ICH_INPUTS}).get_json()
    got: Any = r.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"]
    assert got == api["probability"]


@pytest.mark.parametrize(
    ("quantity", "unit"),
    [
        ("lactate", "MMOL/L"),
        ("lactate", "mmol/LL"),
        ("body_weight", "KG"),
        ("vasopressin_rate", "u/min"),
    ],
)
def test_case_still_matters_outside_the_liter(quantity: str, unit: str) -> None:
    """UCUM is case-sensitive: only the liter has two symbols."""
    assert DEFAULT_UNITS.rule(quantity, unit) is None
