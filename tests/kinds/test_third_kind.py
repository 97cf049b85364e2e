"""A third model kind, added without editing service code: a kind module (tests/kinds/sofa.py)
registered in the one table (service.core.kinds.MODEL_KINDS), a tiny model with its manifest
trained into tmp_path, and a FHIR mapping file. It is then served end to end: the JSON API
(single and batch, with the same errors and warnings as the shipped kinds), the Open Inference
Protocol, and CDS Hooks (discovery and a card)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from service.core.kinds import MODEL_KINDS
from service.training.fit import predict_proba
from tests.cds import fhir
from tests.factories import write_model
from tests.kinds import sofa

LACTATE_MG_DL = 18.0
"""18 mg/dL = 1.998 mmol/L (the JSON API converts with the unit table)."""


@pytest.fixture
def registered() -> Iterator[None]:
    MODEL_KINDS[sofa.KIND.name] = sofa.KIND
    try:
        yield
    finally:
        del MODEL_KINDS[sofa.KIND.name]


@pytest.fixture
def model_dir(tmp_path: Path, registered: None) -> Path:
    root = tmp_path / "models"
    write_model(root, "sofa", columns=sofa.COLUMNS, weights=sofa.WEIGHTS, bands=sofa.BANDS)
    return root


@pytest.fixture
def client(model_dir: Path, tmp_path: Path) -> Iterator[FlaskClient]:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "sofa.json").write_text(json.dumps(sofa.MAPPING))
    app = create_app(Settings(model_dir=model_dir, fhir_mapping_dir=mappings))
    with app.test_client() as c:
        yield c


def expected_probability(model_dir: Path, sofa_score: float, lactate_mmol_l: float) -> float:
    """sklearn's own answer, with each feature held inside the derivation range as the service
    scores it (an input beyond the range is scored at its edge)."""
    version = model_dir / "sofa" / "1.0.0"
    pipeline = joblib.load(version / "model.joblib")
    features = json.loads((version / "manifest.json").read_text())["features"]
    x = [
        min(max(v, f["derivation_range"][0]), f["derivation_range"][1])
        for v, f in zip((sofa_score, lactate_mmol_l), features, strict=True)
    ]
    return float(predict_proba(pipeline, np.array([x]))[0])


def inputs(score: Any = 8, value: float = LACTATE_MG_DL, unit: str = "mg/dL") -> dict[str, Any]:
    return {"sofa": score, "lactate": {"value": value, "unit": unit}}


def test_the_third_kind_is_listed_and_ready(client: FlaskClient) -> None:
    models = client.get("/v1/models").get_json()["models"]
    assert [(m["name"], m["ready"], m["outcome"]) for m in models] == [
        ("sofa", True, "death in ICU (test kind)")
    ]
    assert client.get("/health/ready").status_code == 200


def test_json_api_single_prediction_equals_sklearn(client: FlaskClient, model_dir: Path) -> None:
    r = client.post("/v1/models/sofa/predict", json={"inputs": inputs()})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    want = expected_probability(model_dir, 8, LACTATE_MG_DL / 9.008)
    assert math.isclose(body["probability"], want, rel_tol=1e-9)
    assert {c["feature"] for c in body["contributions"]} == {"sofa", "lactate"}
    assert body["warnings"] == []


def test_json_api_refuses_what_the_kind_refuses(client: FlaskClient) -> None:
    r = client.post("/v1/models/sofa/predict", json={"inputs": inputs(score=30, unit="g/L")})
    assert r.status_code == 422
    errors = {(e["path"], e["rule"]) for e in r.get_json()["errors"]}
    assert errors == {("inputs.sofa", "range"), ("inputs.lactate.unit", "unit")}
    # The schema comes from the kind's declared inputs: unknown fields and wrong types are refused.
    r = client.post("/v1/models/sofa/predict", json={"inputs": {**inputs(), "apache_ii": 3}})
    assert r.status_code == 422
    assert [e["rule"] for e in r.get_json()["errors"]] == ["unknown_field"]
    r = client.post("/v1/models/sofa/predict", json={"inputs": inputs(score="8")})
    assert [e["path"] for e in r.get_json()["errors"]] == ["inputs.sofa"]


def test_json_api_batch_mixes_the_column_and_per_patient_paths(
    client: FlaskClient, model_dir: Path
) -> None:
    patients = [
        {"inputs": inputs(8)},  # plain: scored as a column
        {"inputs": inputs(22)},  # above the usual range: per patient, with a warning
        {"inputs": inputs(3, 2.0, "mmol/L")},
    ]
    r = client.post("/v1/models/sofa/predict/batch", json={"patients": patients})
    assert r.status_code == 200, r.get_json()
    got = r.get_json()["predictions"]
    for item, (s, lac) in zip(
        got, [(8, LACTATE_MG_DL / 9.008), (22, LACTATE_MG_DL / 9.008), (3, 2.0)], strict=True
    ):
        assert math.isclose(
            item["probability"], expected_probability(model_dir, s, lac), rel_tol=1e-9
        )
    assert [[w["code"] for w in item["warnings"]] for item in got] == [
        [],
        ["outside_usual_range", "extrapolation"],
        [],
    ]
    single = client.post("/v1/models/sofa/predict", json=patients[1]).get_json()
    assert got[1] == {k: v for k, v in single.items() if k in got[1]}
    r = client.post(
        "/v1/models/sofa/predict/batch",
        json={"patients": [{"inputs": inputs()}, {"inputs": inputs(unit="mg")}]},
    )
    assert r.status_code == 422
    assert [e["path"] for e in r.get_json()["errors"]] == ["patients.1.inputs.lactate.unit"]


def test_open_inference_protocol(client: FlaskClient) -> None:
    meta = client.get("/v2/models/sofa").get_json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("sofa", "FP64"),
        ("lactate", "FP64"),
    ]
    body: dict[str, Any] = {
        "inputs": [
            {"name": "sofa", "shape": [2], "datatype": "INT64", "data": [8, 22]},
            {
                "name": "lactate",
                "shape": [2],
                "datatype": "FP64",
                "data": [LACTATE_MG_DL, LACTATE_MG_DL],
                "parameters": {"unit": "mg/dL"},
            },
        ]
    }
    r = client.post("/v2/models/sofa/infer", json=body)
    assert r.status_code == 200, r.get_json()
    outputs = {o["name"]: o["data"] for o in r.get_json()["outputs"]}
    for i, score in enumerate([8, 22]):
        single = client.post("/v1/models/sofa/predict", json={"inputs": inputs(score)}).get_json()
        assert outputs["probability"][i] == single["probability"]
    assert json.loads(outputs["warnings"][0]) == []
    assert json.loads(outputs["warnings"][1]) != []
    del body["inputs"][1]["parameters"]
    r = client.post("/v2/models/sofa/infer", json=body)
    assert r.status_code == 422
    assert [e["path"] for e in r.get_json()["errors"]] == ["inputs.1.parameters.unit"]


def test_cds_hooks_discovery_and_card(client: FlaskClient) -> None:
    services = client.get("/cds-services").get_json()["services"]
    assert [s["id"] for s in services] == ["sofa-risk"]
    prefetch = {
        "sofa": fhir.bundle(fhir.observation("http://example.org/sofa", "sofa", 8)),
        "lactate": fhir.bundle(fhir.observation(fhir.LOINC, "2524-7", LACTATE_MG_DL, "mg/dL")),
    }
    r = client.post("/cds-services/sofa-risk", json=fhir.cds_request(prefetch))
    assert r.status_code == 200, r.get_json()
    (card,) = r.get_json()["cards"]
    single = client.post("/v1/models/sofa/predict", json={"inputs": inputs()}).get_json()
    assert card["extension"]["ecmo-risk-service"]["probability"] == single["probability"]
    assert "predicted probability of death in ICU" in card["summary"]


def test_the_json_fast_path_is_derived_for_the_new_kind(registered: None) -> None:
    from service.api.v1.fastload import fast_load
    from service.api.v1.schemas import patient_schema

    body = {"inputs": inputs(), "correlation_id": "c-1"}
    assert fast_load(sofa.KIND, body, batch=False) == patient_schema(sofa.KIND).load(body)
    assert fast_load(sofa.KIND, {"inputs": {**inputs(), "x": 1}}, batch=False) is None
    assert fast_load(sofa.KIND, {"inputs": {"sofa": 8}}, batch=False) is None
