"""Issue 19 items 1, 2, 6 and issue 13 item 4 through the HTTP stack: what readiness, /v1/models
and a refused prediction say about a broken or unvalidated version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.app import create_app
from service.config import Settings
from tests.factories import ICH_INPUTS, WEANING_INPUTS, write_model
from tests.faults import break_card_encoding, edit_manifest, make_unreadable, passed_validation


def _models(tmp_path: Path) -> Path:
    root = tmp_path / "hospital-volume" / "models"
    write_model(root, "weaning")
    write_model(root, "ich")
    return root


def test_a_broken_extra_version_is_listed_with_its_reason_and_readiness_stays_green(
    tmp_path: Path,
) -> None:
    root = _models(tmp_path)
    make_unreadable(write_model(root, "ich", "1.1.0", seed=2) / "model.joblib")
    client = create_app(Settings(model_dir=root)).test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    entries = {(m["name"], m["version"]): m for m in ready.get_json()["models"]}
    assert entries[("ich", "1.1.0")]["ready"] is False
    assert "model.joblib could not be read" in entries[("ich", "1.1.0")]["reason"]
    assert entries[("ich", "1.0.0")]["default"] is True
    assert client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS}).status_code == 200
    refused = client.post("/v1/models/ich/predict?version=1.1.0", json={"inputs": ICH_INPUTS})
    assert refused.status_code == 503 and "could not be read" in refused.get_json()["detail"]


def test_no_response_names_a_filesystem_path(tmp_path: Path) -> None:
    root = _models(tmp_path)
    make_unreadable(write_model(root, "ich", "1.1.0", seed=2) / "model.joblib")
    break_card_encoding(root / "weaning" / "1.0.0")
    (root / "weaning" / "2.0.0").mkdir()
    client = create_app(Settings(model_dir=root, default_versions={"ich": "9.9.9"})).test_client()
    answers = [
        client.get("/health/ready"),
        client.get("/v2/health/ready"),
        client.get("/v1/models"),
        client.post("/v1/models/weaning/predict", json={"inputs": WEANING_INPUTS}),
        client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS}),
        client.post("/v1/models/ich/predict?version=1.1.0", json={"inputs": ICH_INPUTS}),
        client.get("/v2/models/ich/versions/1.1.0/ready"),
    ]
    assert [a.status_code for a in answers] == [503, 503, 200, 503, 503, 503, 503]
    for answer in answers:
        text = answer.get_data(as_text=True)
        assert str(tmp_path) not in text and "hospital-volume" not in text, text
        assert "/proc" not in text, text
    assert "is not UTF-8" in answers[0].get_json()["detail"]


def test_models_and_readiness_say_which_version_is_default_and_why(tmp_path: Path) -> None:
    root = _models(tmp_path)
    edit_manifest(
        write_model(root, "ich", "1.1.0", seed=2),
        site_validation=passed_validation(),
        parent_version="1.0.0",
    )
    write_model(root, "weaning", "1.1.0", seed=2)  # newer, never validated
    client = create_app(Settings(model_dir=root)).test_client()
    listing = client.get("/v1/models").get_json()["models"]
    defaults = {m["name"]: (m["version"], m["default_reason"]) for m in listing if m["default"]}
    assert defaults == {
        "ich": ("1.1.0", "site_validation_passed"),
        "weaning": ("1.0.0", "oldest_version"),
    }
    assert all("default_reason" not in m for m in listing if not m["default"])
    ready = client.get("/health/ready").get_json()["models"]
    assert {(m["name"], m["version"], m.get("default_reason")) for m in ready if m["default"]} == {
        ("ich", "1.1.0", "site_validation_passed"),
        ("weaning", "1.0.0", "oldest_version"),
    }
    predicted = client.post("/v1/models/weaning/predict", json={"inputs": WEANING_INPUTS})
    assert predicted.get_json()["model"]["version"] == "1.0.0"
    pinned = create_app(Settings(model_dir=root, default_versions={"weaning": "1.1.0"}))
    listing = pinned.test_client().get("/v1/models").get_json()["models"]
    assert ("weaning", "1.1.0", "pinned") in {
        (m["name"], m["version"], m.get("default_reason")) for m in listing
    }
    assert json.loads(client.get("/v1/models/ich").get_data())["parent_version"] == "1.0.0"


def test_cds_hooks_answer_with_the_default_version_not_the_newest(tmp_path: Path) -> None:
    from tests.cds import fhir

    root = _models(tmp_path)
    write_model(root, "ich", "1.1.0", seed=2)  # trained after deployment, never validated
    client = create_app(Settings(model_dir=root)).test_client()
    r = client.post("/cds-services/ecmo-ich-risk", json=fhir.cds_request(fhir.ich_prefetch()))
    assert r.status_code == 200, r.get_data(as_text=True)
    (card,) = r.get_json()["cards"]
    assert card["source"]["label"] == "ich model 1.0.0"
    edit_manifest(root / "ich" / "1.1.0", site_validation=passed_validation())
    validated = create_app(Settings(model_dir=root)).test_client()
    r = validated.post("/cds-services/ecmo-ich-risk", json=fhir.cds_request(fhir.ich_prefetch()))
    assert r.get_json()["cards"][0]["source"]["label"] == "ich model 1.1.0"


def test_the_log_keeps_the_paths_the_responses_leave_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _models(tmp_path)
    vdir = write_model(root, "ich", "1.1.0", seed=2)
    (vdir / "manifest.json").unlink()
    (vdir / "manifest.json").mkdir()  # reading it fails with IsADirectoryError, naming the path
    create_app(Settings(model_dir=root))
    (record,) = [r for r in caplog.records if r.getMessage() == "model not served"]
    assert str(vdir / "manifest.json") in record.detail  # type: ignore[attr-defined]
    assert str(vdir) not in record.reason  # type: ignore[attr-defined]
