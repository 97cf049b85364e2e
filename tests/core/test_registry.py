from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core.registry import Registry, load_version
from service.errors import ArtifactRejected, ModelNotReady, UnknownModel
from tests.factories import write_model


def _edit_manifest(version_dir: Path, **changes: object) -> None:
    path = version_dir / "manifest.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_loads_a_verified_model(tmp_path: Path) -> None:
    model = load_version(write_model(tmp_path, "weaning"))
    assert model.name == "weaning" and model.version == "1.0.0"
    assert len(model.linear.weights) == 4


def test_one_changed_byte_in_the_artifact_is_refused_before_unpickling(tmp_path: Path) -> None:
    vdir = write_model(tmp_path, "ich")
    artifact = vdir / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(ArtifactRejected, match="sha256 .* does not match"):
        load_version(vdir)


def test_wrong_feature_order_in_manifest_is_refused(tmp_path: Path) -> None:
    vdir = write_model(tmp_path, "weaning")
    doc = json.loads((vdir / "manifest.json").read_text())
    doc["features"][0], doc["features"][1] = doc["features"][1], doc["features"][0]
    (vdir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactRejected, match="feature order"):
        load_version(vdir)


def test_other_scikit_learn_version_is_refused(tmp_path: Path) -> None:
    vdir = write_model(tmp_path, "weaning")
    doc = json.loads((vdir / "manifest.json").read_text())
    doc["runtime"]["scikit_learn"] = "0.24.2"
    (vdir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactRejected, match="scikit-learn 0.24.2"):
        load_version(vdir)


def test_failing_self_test_is_refused(tmp_path: Path) -> None:
    vdir = write_model(tmp_path, "ich")
    doc = json.loads((vdir / "manifest.json").read_text())
    doc["self_tests"][0]["expected_probability"] += 1e-6
    (vdir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactRejected, match="self-test 0 failed"):
        load_version(vdir)


def test_manifest_without_self_tests_is_refused(tmp_path: Path) -> None:
    vdir = write_model(tmp_path, "ich")
    _edit_manifest(vdir, self_tests=[])
    with pytest.raises(ArtifactRejected, match="no self_tests"):
        load_version(vdir)


def test_gappy_risk_bands_are_refused(tmp_path: Path) -> None:
    vdir = write_model(tmp_path, "ich")
    _edit_manifest(
        vdir,
        risk_bands=[
            {"name": "x", "lower": 0, "upper": 0.5, "cds_indicator": "info", "description": "d"}
        ],
    )
    with pytest.raises(ArtifactRejected, match="cover 0 to 1"):
        load_version(vdir)


def test_a_rejected_model_leaves_the_other_serving(tmp_path: Path) -> None:
    write_model(tmp_path, "weaning")
    vdir = write_model(tmp_path, "ich")
    (vdir / "model.joblib").write_bytes(b"not a pickle")
    registry = Registry.load(tmp_path)
    assert not registry.ready
    assert registry.get("weaning").name == "weaning"
    with pytest.raises(ModelNotReady, match="ich 1.0.0"):
        registry.get("ich")
    (reason,) = registry.not_ready_reasons()
    assert reason.startswith("ich 1.0.0: artifact model.joblib sha256")


def test_highest_validated_version_is_default_and_others_are_addressable(
    tmp_path: Path,
) -> None:
    for version, seed in (("1.2.0", 1), ("1.10.0", 2)):  # numeric order, not string order
        _edit_manifest(
            write_model(tmp_path, "weaning", version, seed=seed),
            site_validation={"status": "passed"},
        )
    registry = Registry.load(tmp_path)
    assert registry.get("weaning").version == "1.10.0"
    assert registry.get("weaning", "1.2.0").version == "1.2.0"
    with pytest.raises(UnknownModel, match="no version 9"):
        registry.get("weaning", "9")


def test_default_version_can_be_pinned(tmp_path: Path) -> None:
    write_model(tmp_path, "weaning", "1.0.0")
    write_model(tmp_path, "weaning", "2.0.0", seed=3)
    assert Registry.load(tmp_path, {"weaning": "1.0.0"}).get("weaning").version == "1.0.0"
    pinned_missing = Registry.load(tmp_path, {"weaning": "3.0.0"})
    assert not pinned_missing.ready


def test_empty_model_dir_is_not_ready_and_says_how_to_point_at_one(tmp_path: Path) -> None:
    # An installed wheel has no models/ beside it: the reason names the setting that points at a
    # model directory (the directory's path goes to the log only: answers name no paths).
    registry = Registry.load(tmp_path / "nothing")
    assert not registry.ready
    (reason,) = registry.not_ready_reasons()
    assert reason.startswith("no models found in the model directory")
    assert "ECMO_MODEL_DIR" in reason and "<name>/<version>/manifest.json" in reason
    assert str(tmp_path) not in reason


def test_manifest_in_the_wrong_directory_is_refused(tmp_path: Path) -> None:
    write_model(tmp_path, "weaning", "1.0.0")
    (tmp_path / "weaning" / "1.0.0").rename(tmp_path / "weaning" / "2.0.0")
    (status,) = Registry.load(tmp_path).statuses
    assert not status.ready and "sits in weaning/2.0.0" in (status.reason or "")


def test_a_version_directory_without_a_manifest_keeps_readiness_red(tmp_path: Path) -> None:
    write_model(tmp_path, "ich")
    vdir = write_model(tmp_path, "weaning")
    (vdir / "manifest.json").unlink()
    registry = Registry.load(tmp_path)
    assert not registry.ready
    assert registry.not_ready_reasons() == [f"weaning {vdir.name}: manifest.json is missing"]
    with pytest.raises(ModelNotReady, match="manifest.json is missing"):
        registry.get("weaning")
    assert registry.get("ich").name == "ich"


def test_a_malformed_manifest_is_refused_and_the_other_model_serves(tmp_path: Path) -> None:
    write_model(tmp_path, "ich")
    vdir = write_model(tmp_path, "weaning")
    doc = json.loads((vdir / "manifest.json").read_text())
    first = next(iter(doc["self_tests"][0]["features"]))
    doc["self_tests"][0]["features"][first] = "high"  # a string where a number belongs
    (vdir / "manifest.json").write_text(json.dumps(doc))
    registry = Registry.load(tmp_path)  # must not raise: the other model still serves
    assert not registry.ready
    assert "manifest.json is malformed" in registry.not_ready_reasons()[0]
    assert registry.get("ich").name == "ich"
