"""FHIR R4 prefetch -> the JSON API's inputs mapping, driven by per-model mapping files.

The mapping from FHIR to features is data: a JSON file per CDS service (shipped defaults in the
service.cds_mappings package, replaceable by a directory named in ECMO_FHIR_MAPPING_DIR) names the
prefetch templates, the code systems and codes of each input, the value kind, the time window and
how one value is chosen among several resources (latest, min, max, sum, any).

extract() produces exactly the inputs mapping the JSON API takes (quantities as {"value", "unit"}
with the UCUM code as unit), so core.inputs.resolve() converts units with the same whitelist and
enforces the same bounds. Every value remembers the FHIR element it came from, so an error raised
by resolve() can be pointed at e.g. prefetch.lactate.entry[0].resource.valueQuantity.code.

This service never queries a FHIR server: data absent from the prefetch is missing
(MissingClinicalData, HTTP 412); a malformed resource is InvalidClinicalData (HTTP 400).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from service.core import specs
from service.core.units import accepted_units, unit_rule
from service.errors import FieldError, InvalidClinicalData, MissingClinicalData

MAPPING_VERSION = 1
UCUM = "http://unitsofmeasure.org"
ACCEPTED_OBSERVATION_STATUS = ("final", "amended", "corrected")
"""Only these Observation.status values are used; preliminary, registered, cancelled,
entered-in-error and unknown results are skipped."""
REFUTED_CONDITION = ("refuted", "entered-in-error")
"""Condition.verificationStatus codes that mean the condition is not there."""
FUTURE_TOLERANCE = timedelta(minutes=5)
"""An observation time later than now + this is not used (clock drift allowance)."""

VALUE_KINDS = ("quantity", "number", "integer", "presence")
SELECTS = {
    "quantity": ("latest", "min", "max", "sum"),
    "number": ("latest", "min", "max"),
    "integer": ("latest", "min", "max"),
    "presence": ("any",),
}
RESOURCES = {"Observation": ("quantity", "number", "integer"), "Condition": ("presence",)}

# Inputs a mapping may produce per model kind: the JSON API's inputs, minus the alternatives
# that cannot come from one Observation (infusion rates, HU pairs).
KIND_INPUTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required, optional)
    "weaning": (
        frozenset({"apache_ii", "lactate_24h", "vis_0h", "vis_24h"}),
        frozenset({"body_weight"}),
    ),
    "ich": (frozenset({"gwr", "stroke_history", "ffp_volume", "min_platelets"}), frozenset()),
}


class MappingError(ValueError):
    """A mapping file is unusable; raised at start-up, naming the file and the field."""


@dataclass(frozen=True)
class CodeMatch:
    system: str
    code: str | None = None
    code_prefix: str | None = None

    def matches(self, system: Any, code: Any) -> bool:
        if system != self.system or not isinstance(code, str):
            return False
        if self.code is not None:
            return code == self.code
        assert self.code_prefix is not None  # guaranteed by the loader
        return code == self.code_prefix or code.startswith(self.code_prefix + ".")

    def describe(self) -> str:
        return f"{self.system}|{self.code if self.code is not None else f'{self.code_prefix}*'}"


@dataclass(frozen=True)
class FeatureMapping:
    input: str
    """Key of the JSON API's inputs mapping, e.g. lactate_24h."""
    label: str
    prefetch: str
    resource: str
    codes: tuple[CodeMatch, ...]
    value: str
    select: str
    window_hours: float | None
    unitless_codes: tuple[str, ...] = ()
    when_none_in_window: dict[str, Any] | None = None

    @property
    def quantity(self) -> str | None:
        """Key into core.units.UNITS for quantity inputs."""
        return specs.INPUT_RULES[self.input].quantity if self.value == "quantity" else None


@dataclass(frozen=True)
class ServiceMapping:
    id: str
    hook: str
    title: str
    description: str
    model: str
    kind: str
    prefetch: dict[str, str]
    features: tuple[FeatureMapping, ...]
    source: str
    """File the mapping was read from (for messages)."""


# --------------------------------------------------------------------------- loading


def _req(doc: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise MappingError(f"{where}{key} is missing")
    value = doc[key]
    if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
        raise MappingError(f"{where}{key} has the wrong type")
    return value


def parse_mapping(doc: Any, source: str) -> ServiceMapping:
    """Parse and check one mapping document; raise MappingError naming file and field."""
    w = f"{source}: "
    if not isinstance(doc, dict):
        raise MappingError(f"{w}not a JSON object")
    if _req(doc, "mapping_version", int, w) != MAPPING_VERSION:
        raise MappingError(f"{w}mapping_version must be {MAPPING_VERSION}")
    svc = _req(doc, "service", dict, w)
    kind = _req(doc, "kind", str, w)
    if kind not in KIND_INPUTS:
        raise MappingError(f"{w}kind {kind!r} is not one of {sorted(KIND_INPUTS)}")
    prefetch = _req(doc, "prefetch", dict, w)
    for key, template in prefetch.items():
        if not isinstance(template, str) or not template:
            raise MappingError(f"{w}prefetch.{key} must be a FHIR query template")
    features: list[FeatureMapping] = []
    for i, f in enumerate(_req(doc, "features", list, w)):
        fw = f"{w}features[{i}]."
        if not isinstance(f, dict):
            raise MappingError(f"{fw[:-1]} is not an object")
        features.append(_parse_feature(f, fw, prefetch))
    required, optional = KIND_INPUTS[kind]
    names = [f.input for f in features]
    if len(set(names)) != len(names):
        raise MappingError(f"{w}an input is mapped twice: {names}")
    if missing := required - set(names):
        raise MappingError(f"{w}inputs {sorted(missing)} are required for kind {kind}")
    if unknown := set(names) - required - optional:
        raise MappingError(f"{w}inputs {sorted(unknown)} are not inputs of kind {kind}")
    hook = _req(svc, "hook", str, w + "service.")
    if hook != "patient-view":
        raise MappingError(f"{w}service.hook {hook!r}: only patient-view is implemented")
    return ServiceMapping(
        id=_req(svc, "id", str, w + "service."),
        hook=hook,
        title=_req(svc, "title", str, w + "service."),
        description=_req(svc, "description", str, w + "service."),
        model=_req(doc, "model", str, w),
        kind=kind,
        prefetch=dict(prefetch),
        features=tuple(features),
        source=source,
    )


def _parse_feature(f: Mapping[str, Any], w: str, prefetch: Mapping[str, str]) -> FeatureMapping:
    name = _req(f, "input", str, w)
    if name not in specs.INPUT_RULES and name != "stroke_history":
        raise MappingError(f"{w}input {name!r} is not an input of the JSON API")
    key = _req(f, "prefetch", str, w)
    if key not in prefetch:
        raise MappingError(f"{w}prefetch {key!r} is not a key of the mapping's prefetch")
    resource = _req(f, "resource", str, w)
    if resource not in RESOURCES:
        raise MappingError(f"{w}resource must be one of {sorted(RESOURCES)}")
    value = _req(f, "value", str, w)
    if value not in RESOURCES[resource]:
        raise MappingError(f"{w}value {value!r} is not allowed for {resource}")
    if (value == "presence") != (name == "stroke_history"):
        raise MappingError(f"{w}value {value!r} does not fit input {name}")
    if value == "quantity" and specs.INPUT_RULES[name].quantity is None:
        raise MappingError(f"{w}input {name} is unitless: use value number or integer")
    if value in ("number", "integer") and specs.INPUT_RULES[name].quantity is not None:
        raise MappingError(f"{w}input {name} needs a unit: use value quantity")
    select = _req(f, "select", str, w)
    if select not in SELECTS[value]:
        raise MappingError(f"{w}select {select!r} is not one of {SELECTS[value]} for {value}")
    window = f.get("window_hours")
    if window is not None and (
        not isinstance(window, int | float) or isinstance(window, bool) or window <= 0
    ):
        raise MappingError(f"{w}window_hours must be a positive number or null")
    if window is None and resource == "Observation":
        raise MappingError(f"{w}window_hours is required for Observation inputs")
    if window is not None and resource == "Condition":
        # A history counts whenever it began; a window here would silently not be applied.
        raise MappingError(
            f"{w}window_hours does not apply to Condition inputs (a recorded condition counts "
            "whenever it began): set it to null"
        )
    codes: list[CodeMatch] = []
    for j, c in enumerate(_req(f, "codes", list, w)):
        cw = f"{w}codes[{j}]."
        if not isinstance(c, dict):
            raise MappingError(f"{cw[:-1]} is not an object")
        system = _req(c, "system", str, cw)
        code, prefix = c.get("code"), c.get("code_prefix")
        if (code is None) == (prefix is None):
            raise MappingError(f"{cw[:-1]} needs exactly one of code, code_prefix")
        if not isinstance(code if code is not None else prefix, str):
            raise MappingError(f"{cw[:-1]} code must be a string")
        codes.append(CodeMatch(system, code, prefix))
    if not codes:
        raise MappingError(f"{w}codes is empty")
    unitless = f.get("unitless_codes", [])
    if not isinstance(unitless, list) or not all(isinstance(u, str) for u in unitless):
        raise MappingError(f"{w}unitless_codes must be a list of UCUM codes")
    fallback = f.get("when_none_in_window")
    if fallback is not None:
        if select != "sum" or not isinstance(fallback, dict):
            raise MappingError(f"{w}when_none_in_window is only for select sum")
        fv, fu = fallback.get("value"), fallback.get("unit")
        if not isinstance(fv, int | float) or not isinstance(fu, str):
            raise MappingError(f"{w}when_none_in_window needs value and unit")
        qty = specs.INPUT_RULES[name].quantity
        if qty is None or unit_rule(qty, fu) is None:
            raise MappingError(f"{w}when_none_in_window.unit {fu!r} is not a unit of {name}")
    return FeatureMapping(
        input=name,
        label=_req(f, "label", str, w),
        prefetch=key,
        resource=resource,
        codes=tuple(codes),
        value=value,
        select=select,
        window_hours=float(window) if window is not None else None,
        unitless_codes=tuple(unitless),
        when_none_in_window=dict(fallback) if fallback is not None else None,
    )


def load_mappings(directory: Path | None = None) -> dict[str, ServiceMapping]:
    """Every *.json mapping in directory (or the shipped defaults), keyed by CDS service id."""
    docs: list[tuple[str, str]] = []
    if directory is None:
        pkg = resources.files("service.cds_mappings")
        for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                docs.append((f"service/cds_mappings/{entry.name}", entry.read_text("utf-8")))
    else:
        if not directory.is_dir():
            raise MappingError(f"FHIR mapping directory {directory} does not exist")
        for path in sorted(directory.glob("*.json")):
            docs.append((str(path), path.read_text("utf-8")))
    out: dict[str, ServiceMapping] = {}
    for source, text in docs:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise MappingError(f"{source}: not valid JSON: {exc}") from exc
        mapping = parse_mapping(doc, source)
        if mapping.id in out:
            raise MappingError(
                f"{source}: service id {mapping.id} is also in {out[mapping.id].source}"
            )
        out[mapping.id] = mapping
    return out


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Source:
    """One FHIR resource a value came from."""

    path: str
    """e.g. prefetch.lactate.entry[0].resource"""
    value_path: str
    """The value element, e.g. prefetch.lactate.entry[0].resource.valueQuantity"""
    effective: datetime | None
    value: float | None
    unit: str | None
    display: str


@dataclass(frozen=True)
class ExtractedInput:
    input: str
    label: str
    select: str
    quantity: bool
    sources: tuple[Source, ...]
    prefetch: str
    note: str | None = None


@dataclass(frozen=True)
class Extraction:
    inputs: dict[str, Any]
    """The JSON API's inputs mapping for core.inputs.resolve()."""
    extracted: dict[str, ExtractedInput]

    def locate(self, error: FieldError) -> FieldError:
        """Point an error raised by resolve() (path like lactate_24h.unit) at the FHIR element."""
        head, _, rest = error.path.partition(".")
        item = self.extracted.get(head)
        if item is None:
            return error.prefixed("prefetch")
        if len(item.sources) != 1:
            what = f"{item.label} ({item.select} of {len(item.sources)} resources)"
            return FieldError(
                f"prefetch.{item.prefetch}", f"{what}: {error.message}", error.rule, error.allowed
            )
        base = item.sources[0].value_path
        if base.endswith(".valueQuantity"):
            base += ".code" if rest == "unit" else ".value"
        return FieldError(base, error.message, error.rule, error.allowed)


@dataclass
class _Skipped:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def describe(self) -> str:
        if not self.counts:
            return "no matching resource"
        return "; ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))


@dataclass
class _Candidate:
    source: Source
    canonical: float | None = None


def parse_fhir_datetime(raw: Any) -> datetime | None:
    """FHIR dateTime/instant -> aware datetime; None when only a date (no time of day) is given.

    Raises ValueError when the string is not a FHIR dateTime at all.
    """
    if not isinstance(raw, str):
        raise ValueError("not a string")
    if "T" not in raw:
        # year, year-month or date: valid FHIR but too coarse for an hour window
        if len(raw) == 10:
            date.fromisoformat(raw)
        elif len(raw) not in (4, 7) or not raw[:4].isdigit():
            raise ValueError("not a FHIR dateTime")
        return None
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise ValueError("a dateTime with a time of day must carry a time zone")
    return value.astimezone(UTC)


def _effective(
    resource: Mapping[str, Any], path: str, errors: list[FieldError]
) -> tuple[bool, datetime | None]:
    """(present, time). Reads effectiveDateTime, effectiveInstant or effectivePeriod (end, else start)."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            try:
                return True, parse_fhir_datetime(resource[key])
            except ValueError as exc:
                errors.append(
                    FieldError(f"{path}.{key}", f"not a FHIR dateTime: {exc}", "datetime")
                )
                return True, None
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        for key in ("end", "start"):
            if key in period:
                try:
                    return True, parse_fhir_datetime(period[key])
                except ValueError as exc:
                    errors.append(
                        FieldError(
                            f"{path}.effectivePeriod.{key}",
                            f"not a FHIR dateTime: {exc}",
                            "datetime",
                        )
                    )
                    return True, None
    return False, None


def _codings(concept: Any) -> list[tuple[Any, Any, Any]]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [
        (c.get("system"), c.get("code"), c.get("display")) for c in codings if isinstance(c, dict)
    ]


def _matches(fm: FeatureMapping, concept: Any) -> str | None:
    for system, code, display in _codings(concept):
        if any(m.matches(system, code) for m in fm.codes):
            return str(display or code)
    return None


def _is_number(v: Any) -> bool:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer literal too large for a float
        return False


def _fmt(v: float) -> str:
    return f"{v:g}"


class _Extractor:
    def __init__(
        self, mapping: ServiceMapping, now: datetime, ffp_ml_per_unit: float | None
    ) -> None:
        self.mapping = mapping
        self.now = now.astimezone(UTC)
        self.ffp = ffp_ml_per_unit
        self.errors: list[FieldError] = []
        self.missing: list[FieldError] = []

    def bundle(
        self, prefetch: Mapping[str, Any], fm: FeatureMapping
    ) -> tuple[list[tuple[str, dict[str, Any]]], bool] | None:
        """The Bundle's (path, resource) entries and whether it is complete; None if unusable."""
        key = fm.prefetch
        where = f"prefetch.{key}"
        if key not in prefetch:
            self.missing.append(
                FieldError(
                    where,
                    f"{fm.label}: prefetch key {key!r} was not provided, and this service does not "
                    "query FHIR servers",
                    "missing",
                    self.mapping.prefetch[key],
                )
            )
            return None
        doc = prefetch[key]
        if doc is None:
            self.missing.append(
                FieldError(
                    where,
                    f"{fm.label}: prefetch {key!r} is null (no data)",
                    "missing",
                    self.mapping.prefetch[key],
                )
            )
            return None
        if not isinstance(doc, dict):
            self.errors.append(FieldError(where, "must be a FHIR Bundle (JSON object)", "type"))
            return None
        rtype = doc.get("resourceType")
        if rtype == "OperationOutcome":
            issues = doc.get("issue")
            texts = []
            for issue in issues if isinstance(issues, list) else []:
                if not isinstance(issue, dict):
                    continue
                details = issue.get("details")
                text = issue.get("diagnostics") or (
                    details.get("text") if isinstance(details, dict) else None
                )
                text = text or issue.get("code")
                if isinstance(text, str) and text:
                    texts.append(text[:200])
            said = f": {'; '.join(texts)}" if texts else ""
            self.missing.append(
                FieldError(
                    where,
                    f"{fm.label}: the CDS client could not prefetch {key!r} (OperationOutcome{said})",
                    "prefetch_failed",
                    self.mapping.prefetch[key],
                )
            )
            return None
        if rtype != "Bundle":
            self.errors.append(
                FieldError(
                    f"{where}.resourceType", f"expected Bundle, got {rtype!r}", "type", "Bundle"
                )
            )
            return None
        if doc.get("type") not in ("searchset", "collection"):
            self.errors.append(
                FieldError(
                    f"{where}.type",
                    f"expected a searchset Bundle, got {doc.get('type')!r}",
                    "bundle_type",
                    "searchset, collection",
                )
            )
            return None
        links = doc.get("link", [])
        complete = not (
            isinstance(links, list)
            and any(isinstance(lk, dict) and lk.get("relation") == "next" for lk in links)
        )
        entries = doc.get("entry", [])
        if not isinstance(entries, list):
            self.errors.append(FieldError(f"{where}.entry", "must be an array", "type"))
            return None
        out: list[tuple[str, dict[str, Any]]] = []
        for i, entry in enumerate(entries):
            epath = f"{where}.entry[{i}]"
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                self.errors.append(
                    FieldError(
                        f"{epath}.resource", "must be a FHIR resource with a resourceType", "type"
                    )
                )
                continue
            out.append((f"{epath}.resource", resource))
        return out, complete

    # ---- Observation

    def observation_value(
        self, fm: FeatureMapping, path: str, res: Mapping[str, Any]
    ) -> tuple[Source | None, str | None]:
        """Read value[x]; returns (source, skip reason). Malformed values are recorded as errors."""
        present, when = _effective(res, path, self.errors)
        if not present:
            return None, "without an effective time"
        if when is None:
            return None, "with a date but no time of day"
        if fm.window_hours is not None and when < self.now - timedelta(hours=fm.window_hours):
            return None, f"older than {_fmt(fm.window_hours)} h"
        if when > self.now + FUTURE_TOLERANCE:
            return None, "dated in the future"
        if "valueQuantity" in res:
            vq = res["valueQuantity"]
            vpath = f"{path}.valueQuantity"
            if not isinstance(vq, dict):
                self.errors.append(FieldError(vpath, "must be a Quantity object", "type"))
                return None, None
            raw: Any = vq.get("value")
            code, system = vq.get("code"), vq.get("system")
            if not _is_number(raw):
                self.errors.append(FieldError(f"{vpath}.value", "must be a finite number", "type"))
                return None, None
            value = float(raw)
            if "comparator" in vq:
                self.errors.append(
                    FieldError(
                        f"{vpath}.comparator",
                        f"a censored value ({vq['comparator']}{_fmt(value)}) cannot be used "
                        f"as {fm.label}",
                        "comparator",
                    )
                )
                return None, None
            if system is not None and system != UCUM:
                self.errors.append(
                    FieldError(
                        f"{vpath}.system",
                        f"units must be UCUM, got system {system!r}",
                        "unit_system",
                        UCUM,
                    )
                )
                return None, None
            if fm.value == "quantity":
                if not isinstance(code, str) or not code:
                    self.errors.append(
                        FieldError(
                            f"{vpath}.code",
                            f"{fm.label} needs a UCUM unit code (valueQuantity.unit is display "
                            "text and is not read)",
                            "unit",
                            ", ".join(accepted_units(fm.quantity or "", self.ffp)),
                        )
                    )
                    return None, None
                return Source(path, vpath, when, value, code, f"{_fmt(value)} {code}"), None
            if code is not None and code not in fm.unitless_codes:
                self.errors.append(
                    FieldError(
                        f"{vpath}.code",
                        f"unknown unit {code!r} for {fm.label}",
                        "unit",
                        ", ".join(fm.unitless_codes) or "no unit",
                    )
                )
                return None, None
            return Source(path, vpath, when, value, None, _fmt(value)), None
        if "valueInteger" in res and fm.value in ("number", "integer"):
            integer = res["valueInteger"]
            if not isinstance(integer, int) or isinstance(integer, bool) or not _is_number(integer):
                self.errors.append(FieldError(f"{path}.valueInteger", "must be an integer", "type"))
                return None, None
            vpath = f"{path}.valueInteger"
            return Source(path, vpath, when, float(integer), None, str(integer)), None
        if "dataAbsentReason" in res:
            return None, "with a dataAbsentReason"
        kinds = [k for k in res if k.startswith("value")]
        if kinds:
            allowed = "valueQuantity" if fm.value == "quantity" else "valueQuantity, valueInteger"
            self.errors.append(
                FieldError(
                    f"{path}.{kinds[0]}",
                    f"{kinds[0]} cannot be read as {fm.label}",
                    "value_type",
                    allowed,
                )
            )
            return None, None
        return None, "without a value"

    def observations(
        self, fm: FeatureMapping, entries: Sequence[tuple[str, dict[str, Any]]], complete: bool
    ) -> tuple[Any, ExtractedInput] | None:
        skipped = _Skipped()
        candidates: list[_Candidate] = []
        for path, res in entries:
            if res["resourceType"] != "Observation" or _matches(fm, res.get("code")) is None:
                continue
            status = res.get("status")
            if status not in ACCEPTED_OBSERVATION_STATUS:
                if not isinstance(status, str):
                    self.errors.append(
                        FieldError(f"{path}.status", "Observation.status is required", "required")
                    )
                else:
                    skipped.add(f"with status {status}")
                continue
            source, reason = self.observation_value(fm, path, res)
            if source is None:
                if reason:
                    skipped.add(reason)
                continue
            cand = _Candidate(source)
            if fm.value == "quantity" and fm.select != "latest":
                cand.canonical = self.canonical(fm, source)
                if cand.canonical is None:
                    continue
            elif fm.value != "quantity":
                cand.canonical = source.value
            candidates.append(cand)
        window = f"within {_fmt(fm.window_hours)} h" if fm.window_hours else ""
        codes = ", ".join(m.describe() for m in fm.codes)
        if fm.select in ("min", "max", "sum") and not complete:
            self.missing.append(
                FieldError(
                    f"prefetch.{fm.prefetch}",
                    f"{fm.label}: the {fm.prefetch!r} Bundle is paginated (link next); the {fm.select} "
                    "needs every resource and this service does not query FHIR servers",
                    "incomplete",
                    "a larger _count in the prefetch template",
                )
            )
            return None
        if not candidates:
            only_older = all(r.startswith("older than") for r in skipped.counts)
            if fm.when_none_in_window is not None and only_older:
                fb = fm.when_none_in_window
                note = str(fb.get("note") or f"none recorded {window}")
                item = ExtractedInput(fm.input, fm.label, fm.select, True, (), fm.prefetch, note)
                return {"value": fb["value"], "unit": fb["unit"]}, item
            self.missing.append(
                FieldError(
                    f"prefetch.{fm.prefetch}",
                    f"{fm.label}: no usable Observation ({', '.join(ACCEPTED_OBSERVATION_STATUS)}) "
                    f"{window} with code {codes} ({skipped.describe()} skipped)",
                    "missing",
                    self.mapping.prefetch[fm.prefetch],
                )
            )
            return None
        if fm.select == "latest":
            chosen = [
                max(
                    candidates, key=lambda c: c.source.effective or datetime.min.replace(tzinfo=UTC)
                )
            ]
            if fm.value == "quantity" and self.canonical(fm, chosen[0].source) is None:
                return None
        elif fm.select == "min":
            chosen = [
                min(candidates, key=lambda c: c.canonical if c.canonical is not None else math.inf)
            ]
        elif fm.select == "max":
            chosen = [
                max(candidates, key=lambda c: c.canonical if c.canonical is not None else -math.inf)
            ]
        else:  # sum, quantity only
            total = math.fsum(c.canonical for c in candidates if c.canonical is not None)
            unit = specs.INPUT_RULES[fm.input].unit
            item = ExtractedInput(
                fm.input, fm.label, "sum", True, tuple(c.source for c in candidates), fm.prefetch
            )
            return {"value": total, "unit": unit}, item
        src = chosen[0].source
        item = ExtractedInput(
            fm.input, fm.label, fm.select, fm.value == "quantity", (src,), fm.prefetch
        )
        assert src.value is not None
        if fm.value == "quantity":
            return {"value": src.value, "unit": src.unit}, item
        if fm.value == "integer" and src.value == int(src.value):
            return int(src.value), item
        return src.value, item

    def canonical(self, fm: FeatureMapping, source: Source) -> float | None:
        """Value in the canonical unit, with the same table as the JSON API; unknown unit -> error."""
        qty = fm.quantity
        assert qty is not None and source.unit is not None and source.value is not None
        rule = unit_rule(qty, source.unit, self.ffp)
        if rule is None or rule.per_weight:
            self.errors.append(
                FieldError(
                    f"{source.value_path}.code",
                    f"unknown unit {source.unit!r} for {fm.label}",
                    "unit",
                    ", ".join(accepted_units(qty, self.ffp)),
                )
            )
            return None
        return source.value * rule.factor

    # ---- Condition

    def conditions(
        self, fm: FeatureMapping, entries: Sequence[tuple[str, dict[str, Any]]], complete: bool
    ) -> tuple[Any, ExtractedInput] | None:
        found: list[Source] = []
        for path, res in entries:
            if res["resourceType"] != "Condition":
                continue
            display = _matches(fm, res.get("code"))
            if display is None:
                continue
            verification = [c for _, c, _ in _codings(res.get("verificationStatus"))]
            if any(v in REFUTED_CONDITION for v in verification):
                continue
            onset = None
            if "onsetDateTime" in res:
                try:
                    onset = parse_fhir_datetime(res["onsetDateTime"])
                except ValueError as exc:
                    self.errors.append(
                        FieldError(
                            f"{path}.onsetDateTime", f"not a FHIR dateTime: {exc}", "datetime"
                        )
                    )
            found.append(Source(path, f"{path}.code", onset, 1.0, None, display))
        if not found and not complete:
            self.missing.append(
                FieldError(
                    f"prefetch.{fm.prefetch}",
                    f"{fm.label}: the {fm.prefetch!r} Bundle is paginated (link next) and its first "
                    "page has no matching Condition; absence cannot be concluded and this service "
                    "does not query FHIR servers",
                    "incomplete",
                    "a larger _count in the prefetch template",
                )
            )
            return None
        note = None if found else "no matching Condition recorded"
        return bool(found), ExtractedInput(
            fm.input, fm.label, "any", False, tuple(found), fm.prefetch, note
        )


def extract(
    mapping: ServiceMapping,
    prefetch: Mapping[str, Any] | None,
    now: datetime,
    ffp_ml_per_unit: float | None = None,
) -> Extraction:
    """Map a CDS request's prefetch to the JSON API's inputs.

    Raises InvalidClinicalData (every malformed element, with its path) before
    MissingClinicalData (every missing input, named), so one call reports all of a kind.
    """
    ex = _Extractor(mapping, now, ffp_ml_per_unit)
    inputs: dict[str, Any] = {}
    extracted: dict[str, ExtractedInput] = {}
    for fm in mapping.features:
        got = ex.bundle(prefetch or {}, fm)
        if got is None:
            continue
        entries, complete = got
        if fm.resource == "Observation":
            result = ex.observations(fm, entries, complete)
        else:
            result = ex.conditions(fm, entries, complete)
        if result is not None:
            inputs[fm.input], extracted[fm.input] = result
    if ex.errors:
        unique = list(dict.fromkeys(ex.errors))
        raise InvalidClinicalData(
            f"{len(unique)} prefetched FHIR element(s) cannot be used", unique
        )
    if ex.missing:
        names = ", ".join(e.message.split(":", 1)[0] for e in ex.missing)
        raise MissingClinicalData(
            f"required clinical data missing from the prefetch: {names}. This service does not "
            "query FHIR servers; the CDS client must prefetch it",
            ex.missing,
        )
    return Extraction(inputs, extracted)
