"""Issue 19 items 1, 2, 6 and issue 13 item 4 at the registry: any failure inside one version stays
inside it, a version that fails never replaces the one serving, and which version is the default
(and why) follows the site-validation policy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.core.registry import Registry
from service.errors import ModelNotReady
from tests.factories import write_model
from tests.faults import (
    break_card_encoding,
    edit_manifest,
    half_copied,
    make_unreadable,
    passed_validation,
)


def _defaults(registry: Registry) -> dict[str, tuple[str, str | None]]:
    return {s.name: (s.version, s.default_reason) for s in registry.statuses if s.default}


def test_an_unreadable_artifact_marks_only_its_version_not_ready(tmp_path: Path) -> None:
    write_model(tmp_path, "weaning")
    write_model(tmp_path, "ich", "1.0.0")
    make_unreadable(write_model(tmp_path, "ich", "1.1.0", seed=2) / "model.joblib")
    registry = Registry.load(tmp_path)  # must not raise
    broken = {(s.name, s.version): s for s in registry.statuses}[("ich", "1.1.0")]
    assert not broken.ready and "model.joblib could not be read" in (broken.reason or "")
    assert registry.get("ich").version == "1.0.0"
    assert registry.ready  # every model has a servable default


def test_a_non_utf8_byte_in_the_card_marks_only_its_version_not_ready(tmp_path: Path) -> None:
    write_model(tmp_path, "ich")
    break_card_encoding(write_model(tmp_path, "weaning"))
    registry = Registry.load(tmp_path)
    (broken,) = [s for s in registry.statuses if not s.ready]
    assert (broken.name, broken.version) == ("weaning", "1.0.0")
    assert "MODEL_CARD.md is not UTF-8" in (broken.reason or "")
    with pytest.raises(ModelNotReady):
        registry.get("weaning")
    assert registry.get("ich").name == "ich"
    assert not registry.ready  # weaning has no servable version at all


def test_an_unreadable_version_directory_does_not_stop_loading(tmp_path: Path) -> None:
    write_model(tmp_path, "ich")
    vdir = write_model(tmp_path, "weaning", "1.1.0")
    write_model(tmp_path, "weaning", "1.0.0")
    (vdir / "manifest.json").unlink()
    (vdir / "manifest.json").mkdir()  # reading it fails with IsADirectoryError
    registry = Registry.load(tmp_path)
    assert registry.get("weaning").version == "1.0.0"


def test_a_half_copied_newer_version_never_replaces_the_serving_one(tmp_path: Path) -> None:
    old = write_model(tmp_path, "ich", "1.0.0")
    write_model(tmp_path, "weaning")
    half_copied(old, tmp_path / "ich" / "2.0.0")
    edit_manifest(tmp_path / "ich" / "2.0.0", version="2.0.0", site_validation=passed_validation())
    registry = Registry.load(tmp_path)
    assert registry.get("ich").version == "1.0.0"
    assert registry.ready
    (broken,) = [s for s in registry.statuses if not s.ready]
    assert broken.version == "2.0.0" and "sha256" in (broken.reason or "")


def test_an_empty_new_version_directory_never_replaces_the_serving_one(tmp_path: Path) -> None:
    write_model(tmp_path, "ich", "1.0.0")
    (tmp_path / "ich" / "1.1.0").mkdir()  # `cp -r` has created the directory, nothing more yet
    assert Registry.load(tmp_path).get("ich").version == "1.0.0"


def test_a_newer_version_without_site_validation_does_not_become_the_default(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "ich", "1.0.0")
    write_model(tmp_path, "ich", "1.1.0", seed=2)
    edit_manifest(tmp_path / "ich" / "1.1.0", site_validation={"status": "not_run"})
    write_model(tmp_path, "ich", "1.2.0", seed=3)
    edit_manifest(
        tmp_path / "ich" / "1.2.0",
        site_validation=passed_validation() | {"status": "failed"},
        parent_version="1.0.0",
    )
    registry = Registry.load(tmp_path)
    assert _defaults(registry) == {"ich": ("1.0.0", "oldest_version")}
    assert registry.get("ich", "1.2.0").version == "1.2.0"  # still addressable explicitly


def test_the_newest_version_with_a_passed_site_validation_becomes_the_default(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "ich", "1.0.0")
    write_model(tmp_path, "ich", "1.1.0", seed=2)
    edit_manifest(
        tmp_path / "ich" / "1.1.0", site_validation=passed_validation(), parent_version="1.0.0"
    )
    write_model(tmp_path, "ich", "1.2.0", seed=3)  # newer, not validated: does not take over
    registry = Registry.load(tmp_path)
    assert _defaults(registry) == {"ich": ("1.1.0", "site_validation_passed")}
    model = registry.get("ich")
    assert model.manifest.site_validation is not None
    assert model.manifest.site_validation.status == "passed"
    assert model.manifest.parent_version == "1.0.0"


def test_a_pin_wins_over_site_validation(tmp_path: Path) -> None:
    write_model(tmp_path, "ich", "1.0.0")
    write_model(tmp_path, "ich", "1.1.0", seed=2)
    edit_manifest(tmp_path / "ich" / "1.1.0", site_validation=passed_validation())
    write_model(tmp_path, "ich", "1.2.0", seed=3)
    registry = Registry.load(tmp_path, {"ich": "1.2.0"})
    assert _defaults(registry) == {"ich": ("1.2.0", "pinned")}


def test_a_malformed_site_validation_refuses_the_version(tmp_path: Path) -> None:
    write_model(tmp_path, "ich", "1.0.0")
    write_model(tmp_path, "ich", "1.1.0", seed=2)
    edit_manifest(tmp_path / "ich" / "1.1.0", site_validation={"status": "great"})
    registry = Registry.load(tmp_path)
    broken = {s.version: s for s in registry.statuses}["1.1.0"]
    assert not broken.ready and "site_validation.status" in (broken.reason or "")
    assert registry.get("ich").version == "1.0.0"


def test_reasons_name_files_inside_the_version_never_filesystem_paths(tmp_path: Path) -> None:
    root = tmp_path / "secret-mount-point"
    write_model(root, "weaning")
    make_unreadable(write_model(root, "weaning", "1.1.0", seed=1) / "model.joblib")
    shutil.rmtree(write_model(root, "ich", "1.0.0").parent / "1.0.0")
    (root / "ich" / "1.0.0").mkdir()
    pinned = Registry.load(root, {"weaning": "3.0.0"})
    reasons = [s.reason or "" for s in pinned.statuses] + pinned.not_ready_reasons()
    assert any("3.0.0" in r for r in reasons) and any("could not be read" in r for r in reasons)
    assert not [r for r in reasons if str(tmp_path) in r or "/proc" in r or "secret-mount" in r]
