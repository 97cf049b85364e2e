"""Find, verify and load every model under the model directory.

Layout: <model_dir>/<name>/<version>/manifest.json beside the artifact it names. For each version:
read and parse the manifest, check the artifact's sha256 *before* unpickling it, check the
scikit-learn version it was written with, load it, check the feature order, and replay the
manifest's self-tests. A version that fails any step, or whose files cannot even be read, is kept
as a failed entry whose reason readiness reports; the others keep serving. Reasons name files
inside the version directory, never filesystem paths (clients see them); `detail` keeps the
exception as raised, for the log.

Which version is the default (the one served without ?version= and by CDS Hooks), per model:
1. the version pinned in ECMO_DEFAULT_VERSIONS, whatever its state ("pinned");
2. else the newest verified version whose manifest records a passed site validation
   ("site_validation_passed");
3. else the oldest verified version, the one deployed first ("oldest_version").
A new version therefore never takes over by being newer, and a version that fails verification
(a half-copied directory) is never the default unless it is pinned.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import sklearn

from service.core.linear import LinearForm, expit, from_pipeline
from service.core.manifest import MANIFEST_FILE, Manifest, parse_manifest
from service.core.specs import MODEL_KINDS, ModelKind
from service.errors import ArtifactRejected, ModelNotReady, UnknownModel

SELF_TEST_TOLERANCE = 1e-9
PINNED = "pinned"
SITE_VALIDATED = "site_validation_passed"
OLDEST = "oldest_version"
DEFAULT_REASONS = (PINNED, SITE_VALIDATED, OLDEST)


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    kind: ModelKind
    linear: LinearForm
    card: str | None
    plots: Mapping[str, Path] = field(default_factory=dict)
    """The manifest's `plots` (e.g. roc, calibration) that exist as files in the version
    directory: what the card page shows."""

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
    default_reason: str | None = None
    """Why this version is the default: one of DEFAULT_REASONS; None when it is not."""
    detail: str | None = None
    """The failure as raised (may name paths): for the log only, never for a client."""


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
    except OSError as exc:
        raise ArtifactRejected(f"{MANIFEST_FILE} could not be read: {_os_reason(exc)}") from exc
    except ValueError as exc:
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
    try:
        actual = sha256_file(artifact)
    except OSError as exc:
        raise ArtifactRejected(
            f"artifact {manifest.artifact_file} could not be read: {_os_reason(exc)}"
        ) from exc
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
            f"artifact could not be loaded: {type(exc).__name__}: {_without_paths(str(exc))}"
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
        try:
            card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
        except UnicodeDecodeError as exc:
            raise ArtifactRejected(
                f"{manifest.card_file} is not UTF-8 (byte {exc.start}): the card must be readable"
            ) from exc
        except OSError as exc:
            raise ArtifactRejected(
                f"{manifest.card_file} could not be read: {_os_reason(exc)}"
            ) from exc
    return LoadedModel(manifest, kind, linear, card, _plots(version_dir, manifest.raw.get("plots")))


def _plots(version_dir: Path, listed: Any) -> dict[str, Path]:
    """Plot name -> PNG file, for the manifest's plots that are plain files in version_dir."""
    if not isinstance(listed, dict):
        return {}
    plots = {}
    for name, file in listed.items():
        if isinstance(name, str) and isinstance(file, str) and file.endswith(".png"):
            path = version_dir / file
            try:
                if path.parent == version_dir and path.is_file():
                    plots[name] = path.resolve()
            except OSError:
                continue  # an unreadable plot is not shown; the model is still served
    return plots


def _os_reason(exc: OSError) -> str:
    """What went wrong, without the path an OSError's text carries."""
    return exc.strerror or type(exc).__name__


_PATH = re.compile(r"(?<![\w.])/[^\s'\"():,]+")


def _without_paths(text: str) -> str:
    return _PATH.sub("<path>", text)


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
        try:
            name_dirs = sorted(p for p in model_dir.iterdir() if p.is_dir())
        except OSError as exc:
            name_dirs = []
            if model_dir.exists():
                reason = f"the model directory could not be read: {_os_reason(exc)}"
                statuses.append(ModelStatus("*", "*", False, False, reason, None, detail=str(exc)))
        for name_dir in name_dirs:
            if name_dir.name.startswith("."):
                continue
            statuses.extend(_load_model(name_dir, pinned.get(name_dir.name)))
        return cls(statuses, model_dir)

    @property
    def statuses(self) -> list[ModelStatus]:
        return list(self._statuses)

    @property
    def ready(self) -> bool:
        """Every model has a default that serves. A failed non-default version is reported
        (statuses, not_ready_reasons) but does not take the others out of service."""
        return bool(self._default) and all(s.ready for s in self._default.values())

    def not_ready_reasons(self) -> list[str]:
        if not self._statuses:
            # The usual cause is an installed wheel (no models/ beside it): say how to point at one.
            # The path itself goes to the log only (create_app): answers name no paths.
            return [
                "no models found in the model directory (expected <name>/<version>/manifest.json;"
                " set ECMO_MODEL_DIR to the directory that holds them, e.g. the repository's"
                " models/)"
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


def _load_model(name_dir: Path, pin: str | None) -> list[ModelStatus]:
    """Every version of one model, and the default chosen by the policy in the module docstring."""
    name = name_dir.name
    try:
        # Every version directory counts, with a manifest or not: one without it is reported
        # (not ready) rather than skipped, so a broken deploy cannot look healthy. Hidden entries
        # (a mounted volume's ..data links, a version staged as .1.2.0 before its rename) are not.
        vdirs = sorted(
            (p for p in name_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: _version_key(p.name),
        )
    except OSError as exc:
        reason = f"the {name} directory could not be read: {_os_reason(exc)}"
        why = PINNED if pin else None
        return [ModelStatus(name, pin or "*", False, True, reason, None, why, str(exc))]
    if not vdirs:
        return []
    statuses = [_status(name, vdir) for vdir in vdirs]
    ready = [s for s in statuses if s.ready]
    validated = [
        s
        for s in ready
        if s.model is not None
        and (sv := s.model.manifest.site_validation) is not None
        and sv.status == "passed"
    ]
    if pin is not None:
        chosen, why = pin, PINNED
    elif validated:
        chosen, why = validated[-1].version, SITE_VALIDATED
    elif ready:
        chosen, why = ready[0].version, OLDEST
    else:
        chosen, why = statuses[0].version, OLDEST  # none serves: readiness says why
    out = [
        replace(s, default=True, default_reason=why) if s.version == chosen else s for s in statuses
    ]
    if chosen not in {s.version for s in statuses}:
        reason = f"configured default version {chosen} (ECMO_DEFAULT_VERSIONS) is not in the model directory"
        out.append(ModelStatus(name, chosen, False, True, reason, None, PINNED))
    return out


def _status(name: str, vdir: Path) -> ModelStatus:
    try:
        model = load_version(vdir)
    except ArtifactRejected as exc:
        cause = exc.__cause__
        # str() of an OSError names the file with its path: the log is where that belongs.
        detail = f"{exc.detail} ({type(cause).__name__}: {cause})" if cause else exc.detail
        return ModelStatus(name, vdir.name, False, False, exc.detail, None, detail=detail)
    except Exception as exc:  # a failure inside one version must stay inside it
        reason = (
            f"the version could not be loaded: {type(exc).__name__}: {_without_paths(str(exc))}"
        )
        return ModelStatus(name, vdir.name, False, False, reason, None, detail=repr(exc))
    if model.name != name or model.version != vdir.name:
        reason = f"manifest says {model.name} {model.version} but it sits in {name}/{vdir.name}"
        return ModelStatus(name, vdir.name, False, False, reason, None)
    return ModelStatus(name, vdir.name, True, False, None, model)
