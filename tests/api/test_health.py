from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.factories import ICH_INPUTS, WEANING_INPUTS, write_model


def test_live_and_ready_when_all_models_verified(client: FlaskClient) -> None:
    assert client.get("/health/live").status_code == 200
    r = client.get("/health/ready")
    assert r.status_code == 200
    assert {(m["name"], m["ready"]) for m in r.get_json()["models"]} == {
        ("weaning", True),
        ("ich", True),
    }


def test_tampered_artifact_keeps_readiness_red_naming_it_and_the_other_model_serves(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "weaning")
    artifact = write_model(tmp_path, "ich") / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[100] ^= 0xFF
    artifact.write_bytes(bytes(data))
    client = create_app(Settings(model_dir=tmp_path)).test_client()

    ready = client.get("/health/ready")
    assert ready.status_code == 503
    body = ready.get_json()
    assert "ich 1.0.0" in body["detail"] and "sha256" in body["detail"]
    assert client.get("/health/live").status_code == 200
    assert (
        client.post("/v1/models/weaning/predict", json={"inputs": WEANING_INPUTS}).status_code
        == 200
    )
    refused = client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS})
    assert refused.status_code == 503 and refused.get_json()["code"] == "model_not_ready"


def test_wrong_feature_order_keeps_readiness_red(tmp_path: Path) -> None:
    import json

    write_model(tmp_path, "ich")
    vdir = write_model(tmp_path, "weaning")
    doc = json.loads((vdir / "manifest.json").read_text())
    doc["features"].reverse()
    (vdir / "manifest.json").write_text(json.dumps(doc))
    client = create_app(Settings(model_dir=tmp_path)).test_client()
    ready = client.get("/health/ready")
    assert (
        ready.status_code == 503
        and "weaning 1.0.0: manifest feature order" in ready.get_json()["detail"]
    )
    assert client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS}).status_code == 200


def test_models_listing_manifest_and_card(client: FlaskClient) -> None:
    listing = client.get("/v1/models").get_json()["models"]
    assert {(m["name"], m["version"], m["default"]) for m in listing} == {
        ("weaning", "1.0.0", True),
        ("ich", "1.0.0", True),
    }
    manifest = client.get("/v1/models/ich").get_json()
    assert manifest["kind"] == "ich" and len(manifest["artifact"]["sha256"]) == 64
    card = client.get("/v1/models/ich/card")
    assert card.status_code == 200 and card.mimetype == "text/markdown"
    assert client.get("/v1/models/nope/card").status_code == 404
