"""manifest.json: what sits beside every artifact, and the checks that make it trustworthy.

The training command writes it; the registry reads it before it touches the pickle. Parsing is
strict: a manifest that lacks a field or has one of the wrong type is refused with a message that
names the field, so a hand-edited or truncated manifest never reaches readiness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.errors import ArtifactRejected

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
CDS_INDICATORS = ("info", "warning", "critical")
SITE_VALIDATION_STATUSES = ("passed", "failed", "not_run")


@dataclass(frozen=True)
class RiskBand:
    name: str
    lower: float
    upper: float
    cds_indicator: str
    description: str

    def contains(self, p: float) -> bool:
        return self.lower <= p < self.upper or (self.upper == 1.0 and p == 1.0)


@dataclass(frozen=True)
class ManifestFeature:
    name: str
    label: str
    unit: str
    type: str
    derivation_range: tuple[float, float]


@dataclass(frozen=True)
class SelfTest:
    features: dict[str, float]
    expected_probability: float


@dataclass(frozen=True)
class SiteValidation:
    """What `ecmo-validate` recorded about this version on a hospital's own cohort (optional).

    Only status "passed" lets a version become the default without a pin (registry.py)."""

    status: str
    cohort_sha256: str | None
    n: int | None
    events: int | None
    date: str | None


@dataclass(frozen=True)
class Distribution:
    """A cohort's cumulative fraction at each bucket upper bound (`le`, increasing)."""

    le: tuple[float, ...]
    cumulative_fraction: tuple[float, ...]


@dataclass(frozen=True)
class Reference:
    """The derivation cohort's distributions (manifest `reference_distribution`, optional)."""

    features: dict[str, Distribution]
    probability: Distribution


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    version: str
    artifact_file: str
    artifact_sha256: str
    runtime: dict[str, str]
    features: tuple[ManifestFeature, ...]
    risk_bands: tuple[RiskBand, ...]
    self_tests: tuple[SelfTest, ...]
    card_file: str | None
    raw: dict[str, Any]
    """The whole document, served as-is by the manifest endpoint."""
    site_validation: SiteValidation | None = None
    parent_version: str | None = None
    """The version this one was derived from (recalibration), when it was."""
    reference: Reference | None = None
    """None for a manifest written before training recorded it: no drift reference then."""

    def band_for(self, p: float) -> RiskBand:
        for band in self.risk_bands:
            if band.contains(p):
                return band
        raise ValueError(f"probability {p} is in no risk band")  # bands are checked at load


def _get(doc: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str = "") -> Any:
    if key not in doc:
        raise ArtifactRejected(f"manifest field {where}{key} is missing")
    value = doc[key]
    if not isinstance(value, typ) or (isinstance(value, bool) and bool not in _as_tuple(typ)):
        raise ArtifactRejected(f"manifest field {where}{key} has the wrong type")
    return value


def _as_tuple(typ: type | tuple[type, ...]) -> tuple[type, ...]:
    return typ if isinstance(typ, tuple) else (typ,)


def _pair(value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ArtifactRejected(f"manifest field {where} must be [low, high]")
    return float(value[0]), float(value[1])


def _distribution(doc: Any, where: str) -> Distribution:
    if not isinstance(doc, dict):
        raise ArtifactRejected(f"manifest field {where} must be an object")
    numbers = []
    for key in ("le", "cumulative_fraction"):
        value = _get(doc, key, list, where + ".")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise ArtifactRejected(f"manifest field {where}.{key} must be a list of numbers")
        numbers.append(tuple(float(v) for v in value))
    le, fractions = numbers
    if (
        not le
        or len(le) != len(fractions)
        or any(a >= b for a, b in zip(le, le[1:], strict=False))
        or any(a > b for a, b in zip(fractions, fractions[1:], strict=False))
        or not all(0.0 <= f <= 1.0 for f in fractions)
    ):
        raise ArtifactRejected(
            f"manifest field {where} must have increasing le and as many non-decreasing "
            "cumulative fractions in [0, 1]"
        )
    return Distribution(le, fractions)


def _reference(doc: Any, feature_names: set[str]) -> Reference | None:
    if doc is None:
        return None
    where = "reference_distribution"
    if not isinstance(doc, dict):
        raise ArtifactRejected(f"manifest field {where} must be an object")
    features = _get(doc, "features", dict, where + ".")
    if not set(features) <= feature_names:
        raise ArtifactRejected(f"manifest field {where}.features names unknown features")
    return Reference(
        features={k: _distribution(v, f"{where}.features.{k}") for k, v in features.items()},
        probability=_distribution(
            _get(doc, "probability", dict, where + "."), where + ".probability"
        ),
    )


def parse_manifest(doc: Any) -> Manifest:
    if not isinstance(doc, dict):
        raise ArtifactRejected("manifest is not a JSON object")
    if _get(doc, "manifest_version", int) != MANIFEST_VERSION:
        raise ArtifactRejected(f"manifest_version must be {MANIFEST_VERSION}")
    artifact = _get(doc, "artifact", dict)
    runtime = _get(doc, "runtime", dict)
    features = []
    for i, f in enumerate(_get(doc, "features", list)):
        w = f"features[{i}]."
        features.append(
            ManifestFeature(
                name=_get(f, "name", str, w),
                label=_get(f, "label", str, w),
                unit=_get(f, "unit", str, w),
                type=_get(f, "type", str, w),
                derivation_range=_pair(
                    _get(f, "derivation_range", list, w), w + "derivation_range"
                ),
            )
        )
    bands = []
    for i, b in enumerate(_get(doc, "risk_bands", list)):
        w = f"risk_bands[{i}]."
        indicator = _get(b, "cds_indicator", str, w)
        if indicator not in CDS_INDICATORS:
            raise ArtifactRejected(
                f"manifest field {w}cds_indicator must be one of {CDS_INDICATORS}"
            )
        bands.append(
            RiskBand(
                name=_get(b, "name", str, w),
                lower=float(_get(b, "lower", (int, float), w)),
                upper=float(_get(b, "upper", (int, float), w)),
                cds_indicator=indicator,
                description=_get(b, "description", str, w),
            )
        )
    _check_bands(bands)
    tests = []
    for i, t in enumerate(_get(doc, "self_tests", list)):
        w = f"self_tests[{i}]."
        feats = _get(t, "features", dict, w)
        tests.append(
            SelfTest(
                features={k: float(v) for k, v in feats.items()},
                expected_probability=float(_get(t, "expected_probability", (int, float), w)),
            )
        )
    if not tests:
        raise ArtifactRejected(
            "manifest has no self_tests: a model that cannot be checked is not served"
        )
    card = doc.get("card")
    parent = doc.get("parent_version")
    if parent is not None and not isinstance(parent, str):
        raise ArtifactRejected("manifest field parent_version has the wrong type")
    return Manifest(
        name=_get(doc, "name", str),
        kind=_get(doc, "kind", str),
        version=_get(doc, "version", str),
        artifact_file=_get(artifact, "file", str, "artifact."),
        artifact_sha256=_get(artifact, "sha256", str, "artifact.").lower(),
        runtime={k: str(v) for k, v in runtime.items()},
        features=tuple(features),
        risk_bands=tuple(bands),
        self_tests=tuple(tests),
        card_file=card if isinstance(card, str) else None,
        raw=doc,
        site_validation=_site_validation(doc.get("site_validation")),
        parent_version=parent,
        reference=_reference(doc.get("reference_distribution"), {f.name for f in features}),
    )


def _optional(doc: Mapping[str, Any], key: str, typ: type, where: str) -> Any:
    return _get(doc, key, typ, where) if doc.get(key) is not None else None


def _site_validation(value: Any) -> SiteValidation | None:
    if value is None:
        return None
    w = "site_validation."
    if not isinstance(value, dict):
        raise ArtifactRejected("manifest field site_validation must be an object")
    status = _get(value, "status", str, w)
    if status not in SITE_VALIDATION_STATUSES:
        raise ArtifactRejected(
            f"manifest field site_validation.status must be one of {SITE_VALIDATION_STATUSES}"
        )
    return SiteValidation(
        status=status,
        cohort_sha256=_optional(value, "cohort_sha256", str, w),
        n=_optional(value, "n", int, w),
        events=_optional(value, "events", int, w),
        date=_optional(value, "date", str, w),
    )


def _check_bands(bands: list[RiskBand]) -> None:
    if not bands:
        raise ArtifactRejected("manifest has no risk_bands")
    edge = 0.0
    for band in bands:
        if band.lower != edge or band.upper <= band.lower:
            raise ArtifactRejected("risk_bands must be ordered, contiguous and cover 0 to 1")
        edge = band.upper
    if edge != 1.0:
        raise ArtifactRejected("risk_bands must be ordered, contiguous and cover 0 to 1")
