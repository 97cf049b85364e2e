"""Find, verify and load every model under the model directory.

Layout: <model_dir>/<name>/<version>/manifest.json beside the artifact it names. For each version:
read and parse the manifest, check the artifact's sha256 *before* unpickling it, check the
scikit-learn version it was written with, load it, check the feature order, and replay the
manifest's self-tests. A version that fails any step is kept as a failed entry whose reason
readiness reports; the others keep serving.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import joblib
import sklearn

from service.core.linear import LinearForm, expit, from_pipeline
from service.core.manifest import MANIFEST_FILE, Manifest, parse_manifest
from service.core.specs import MODEL_KINDS, ModelKind
from service.errors import ArtifactRejected, ModelNotReady, UnknownModel

SELF_TEST_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    kind: ModelKind
    linear: LinearForm
    card: str | None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def sha256(self) -> str:
        return self.manifest.artifact_sha256


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: str
    ready: bool
    default: bool
    reason: str | None
    model: LoadedModel | None


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-+]", version))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_version(version_dir: Path) -> LoadedModel:
    """Verify and load one model version; raise ArtifactRejected saying why not."""
    manifest_path = version_dir / MANIFEST_FILE
    try:
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactRejected(f"{MANIFEST_FILE} is missing") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactRejected(f"{MANIFEST_FILE} is not readable JSON: {exc}") from exc
    try:
        manifest = parse_manifest(doc)
    except ArtifactRejected:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # A value of the wrong type deep in the file: refuse this version, keep the others.
        raise ArtifactRejected(
            f"{MANIFEST_FILE} is malformed: {type(exc).__name__}: {exc}"
        ) from exc
    kind = MODEL_KINDS.get(manifest.kind)
    if kind is None:
        raise ArtifactRejected(
            f"unknown model kind {manifest.kind!r}; known: {sorted(MODEL_KINDS)}"
        )
    names = [f.name for f in manifest.features]
    if names != list(kind.feature_names):
        raise ArtifactRejected(
            f"manifest feature order {names} does not match the {kind.name} features {list(kind.feature_names)}"
        )
    artifact = version_dir / manifest.artifact_file
    if artifact.parent != version_dir or not artifact.is_file():
        raise ArtifactRejected(f"artifact {manifest.artifact_file} is missing")
    actual = sha256_file(artifact)
    if actual != manifest.artifact_sha256:
        raise ArtifactRejected(
            f"artifact {manifest.artifact_file} sha256 {actual} does not match the manifest "
            f"({manifest.artifact_sha256}); refusing to unpickle it"
        )
    trained_with = manifest.runtime.get("scikit_learn")
    if trained_with != sklearn.__version__:
        raise ArtifactRejected(
            f"artifact was written by scikit-learn {trained_with}, this service runs {sklearn.__version__}"
        )
    try:
        estimator = joblib.load(artifact)
    except Exception as exc:  # any unpickling failure means "not served"
        raise ArtifactRejected(
            f"artifact could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    linear = from_pipeline(estimator, names)
    for i, test in enumerate(manifest.self_tests):
        try:
            x = [test.features[n] for n in names]
        except KeyError as exc:
            raise ArtifactRejected(f"self_tests[{i}] lacks feature {exc.args[0]}") from exc
        got = expit(linear.baseline + math.fsum(linear.contributions(x)))
        if not abs(got - test.expected_probability) <= SELF_TEST_TOLERANCE:
            raise ArtifactRejected(
                f"self-test {i} failed: expected probability {test.expected_probability!r}, got {got!r}"
            )
    card = None
    if manifest.card_file:
        card_path = version_dir / manifest.card_file
        card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
    return LoadedModel(manifest, kind, linear, card)


class Registry:
    """Every model version found at start-up, loaded or not, and which version is the default."""

    def __init__(self, statuses: list[ModelStatus], model_dir: Path | None = None) -> None:
        self._model_dir = model_dir
        self._statuses = statuses
        self._by_key = {(s.name, s.version): s for s in statuses}
        self._default = {s.name: s for s in statuses if s.default}

    @classmethod
    def load(cls, model_dir: Path, default_versions: Mapping[str, str] | None = None) -> Registry:
        pinned = dict(default_versions or {})
        statuses: list[ModelStatus] = []
        if model_dir.is_dir():
            for name_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                # Every version directory counts, with a manifest or not: one without it is
                # reported (not ready) rather than skipped, so a broken deploy cannot look healthy.
                # Hidden entries (a mounted volume's ..data links) are not versions.
                versions = sorted(
                    (p for p in name_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                    key=lambda p: _version_key(p.name),
                )
                if not versions:
                    continue
                default = pinned.get(name_dir.name, versions[-1].name)
                for vdir in versions:
                    statuses.append(_status(name_dir.name, vdir, vdir.name == default))
                if default not in {v.name for v in versions}:
                    reason = f"configured default version {default} is not in {name_dir}"
                    statuses.append(ModelStatus(name_dir.name, default, False, True, reason, None))
        return cls(statuses, model_dir)

    @property
    def statuses(self) -> list[ModelStatus]:
        return list(self._statuses)

    @property
    def ready(self) -> bool:
        return bool(self._statuses) and all(s.ready for s in self._statuses)

    def not_ready_reasons(self) -> list[str]:
        if not self._statuses:
            # The usual cause is an installed wheel (no models/ beside it): say how to point at one.
            return [
                f"no models found in the model directory {self._model_dir or ''}".rstrip()
                + " (expected <name>/<version>/manifest.json; set ECMO_MODEL_DIR to the directory"
                " that holds them, e.g. the repository's models/)"
            ]
        return [f"{s.name} {s.version}: {s.reason}" for s in self._statuses if not s.ready]

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        status = self._default.get(name) if version is None else self._by_key.get((name, version))
        if status is None:
            known = sorted({s.name for s in self._statuses})
            if version is not None and name in known:
                versions = sorted(s.version for s in self._statuses if s.name == name)
                raise UnknownModel(f"model {name} has no version {version}; versions: {versions}")
            raise UnknownModel(f"no model named {name!r}; models: {known}")
        if status.model is None:
            raise ModelNotReady(
                f"model {status.name} {status.version} is not served: {status.reason}"
            )
        return status.model


def _status(name: str, vdir: Path, default: bool) -> ModelStatus:
    try:
        model = load_version(vdir)
    except ArtifactRejected as exc:
        return ModelStatus(name, vdir.name, False, default, exc.detail, None)
    if model.name != name or model.version != vdir.name:
        reason = f"manifest says {model.name} {model.version} but it sits in {name}/{vdir.name}"
        return ModelStatus(name, vdir.name, False, default, reason, None)
    return ModelStatus(name, vdir.name, True, default, None, model)
