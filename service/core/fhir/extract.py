"""FHIR R4 prefetch -> the JSON API's inputs mapping, driven by a service's mapping file.

extract() produces exactly the inputs mapping the JSON API takes (quantities as {"value", "unit"}
with the UCUM code as unit), so core.inputs.resolve() converts units with the same whitelist and
enforces the same bounds. Every value remembers the FHIR element it came from, so an error raised
by resolve() can be pointed at e.g. prefetch.lactate.entry[0].resource.valueQuantity.code.

This service never queries a FHIR server: data absent from the prefetch is missing
(MissingClinicalData, HTTP 412); a malformed resource is InvalidClinicalData (HTTP 400).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from service.core.fhir.mapping import FeatureMapping, ServiceMapping
from service.core.fhir.values import (
    codings,
    effective_time,
    fmt,
    is_number,
    matches,
    parse_fhir_datetime,
)
from service.core.units import DEFAULT_UNITS, UnitTable
from service.errors import FieldError, InvalidClinicalData, MissingClinicalData

UCUM = "http://unitsofmeasure.org"
ACCEPTED_OBSERVATION_STATUS = ("final", "amended", "corrected")
"""Only these Observation.status values are used; preliminary, registered, cancelled,
entered-in-error and unknown results are skipped."""
COUNTED_CONDITION = "confirmed"
"""The one Condition.verificationStatus that counts: unconfirmed, provisional, differential,
refuted, entered-in-error and a missing verificationStatus do not (the card says so)."""
_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
"""A literal reference to a Patient, relative or absolute (FHIR R4 references.html)."""
FUTURE_TOLERANCE = timedelta(minutes=5)
"""An observation time later than now + this is not used (clock drift allowance)."""


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
    notices: tuple[str, ...] = ()
    """What was left out and the clinician should know (shown on the card; no identifiers)."""

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


class _Extractor:
    def __init__(
        self, mapping: ServiceMapping, now: datetime, units: UnitTable, patient: str | None
    ) -> None:
        self.mapping = mapping
        self.patient = patient
        self.other_patient = 0
        self.now = now.astimezone(UTC)
        self.units = units
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
        if doc is None and fm.when_prefetch_null is not None:
            return [], True  # no data in the EHR, and the mapping says what that means
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
            if not self.about_patient(resource):
                self.other_patient += 1
                continue
            out.append((f"{epath}.resource", resource))
        return out, complete

    def about_patient(self, resource: Mapping[str, Any]) -> bool:
        """False only when the resource names a Patient other than the hook's context.patientId
        (a prefetch template or an EHR error can put another patient's data in a Bundle)."""
        if self.patient is None:
            return True
        for key in ("subject", "patient"):
            ref = resource.get(key)
            reference = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(reference, str):
                m = _PATIENT_REFERENCE.search(reference)
                if m is not None:
                    return m.group(1) == self.patient
        return True

    # ---- Observation

    def observation_value(
        self, fm: FeatureMapping, path: str, res: Mapping[str, Any]
    ) -> tuple[Source | None, str | None]:
        """Read value[x]; returns (source, skip reason). Malformed values are recorded as errors."""
        present, when = effective_time(res, path, self.errors)
        if not present:
            return None, "without an effective time"
        if when is None:
            return None, "with a date but no time of day"
        if fm.window_hours is not None and when < self.now - timedelta(hours=fm.window_hours):
            return None, f"older than {fmt(fm.window_hours)} h"
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
            if not is_number(raw):
                self.errors.append(FieldError(f"{vpath}.value", "must be a finite number", "type"))
                return None, None
            value = float(raw)
            if "comparator" in vq:
                self.errors.append(
                    FieldError(
                        f"{vpath}.comparator",
                        f"a censored value ({vq['comparator']}{fmt(value)}) cannot be used "
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
                            ", ".join(self.units.accepted(fm.quantity or "")),
                        )
                    )
                    return None, None
                return Source(path, vpath, when, value, code, f"{fmt(value)} {code}"), None
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
            return Source(path, vpath, when, value, None, fmt(value)), None
        if "valueInteger" in res and fm.value in ("number", "integer"):
            integer = res["valueInteger"]
            if not isinstance(integer, int) or isinstance(integer, bool) or not is_number(integer):
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
            if res["resourceType"] != "Observation" or matches(fm, res.get("code")) is None:
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
        window = f"within {fmt(fm.window_hours)} h" if fm.window_hours else ""
        codes = ", ".join(m.describe() for m in fm.codes)
        if (
            fm.select in ("min", "max", "sum")
            and not complete
            and not self.covers_window(fm, entries)
        ):
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
            unit = fm.unit
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

    def covers_window(
        self, fm: FeatureMapping, entries: Sequence[tuple[str, dict[str, Any]]]
    ) -> bool:
        """Whether the first page of a paginated searchset already holds the whole window: its
        matching Observations are newest first (as _sort=-date asks; checked here, not trusted)
        and the last one is older than the window, so every later page is older still."""
        if fm.window_hours is None:
            return False
        times: list[datetime] = []
        for path, res in entries:
            if res["resourceType"] != "Observation" or matches(fm, res.get("code")) is None:
                continue
            _, when = effective_time(res, path, [])
            if when is None:
                return False  # an undated entry: the page's order cannot be checked
            times.append(when)
        start = self.now - timedelta(hours=fm.window_hours)
        newest_first = all(a >= b for a, b in zip(times, times[1:], strict=False))
        return bool(times) and newest_first and times[-1] < start

    def canonical(self, fm: FeatureMapping, source: Source) -> float | None:
        """Value in the canonical unit, with the same table as the JSON API; unknown unit -> error."""
        qty = fm.quantity
        assert qty is not None and source.unit is not None and source.value is not None
        rule = self.units.rule(qty, source.unit)
        if rule is None or rule.per_weight:
            self.errors.append(
                FieldError(
                    f"{source.value_path}.code",
                    f"unknown unit {source.unit!r} for {fm.label}",
                    "unit",
                    ", ".join(self.units.accepted(qty)),
                )
            )
            return None
        return source.value * rule.factor

    # ---- Condition

    def conditions(
        self, fm: FeatureMapping, entries: Sequence[tuple[str, dict[str, Any]]], complete: bool
    ) -> tuple[Any, ExtractedInput] | None:
        found: list[Source] = []
        skipped = _Skipped()
        for path, res in entries:
            if res["resourceType"] != "Condition":
                continue
            display = matches(fm, res.get("code"))
            if display is None:
                continue
            verification = [c for _, c, _ in codings(res.get("verificationStatus"))]
            if COUNTED_CONDITION not in verification:
                status = next((v for v in verification if isinstance(v, str)), None)
                skipped.add(
                    f"with verificationStatus {status}"
                    if status
                    else "without a verificationStatus"
                )
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
        counts = f"counted: confirmed Conditions coded {_describe_codes(fm)}"
        if skipped.counts:
            counts += f"; not counted: {skipped.describe()}"
        note = counts if found else f"none recorded ({counts})"
        return bool(found), ExtractedInput(
            fm.input, fm.label, "any", False, tuple(found), fm.prefetch, note
        )


def _describe_codes(fm: FeatureMapping) -> str:
    """Short: the code systems with their prefixes, and each value set by name."""
    by_system: dict[str, list[str]] = {}
    sets: list[str] = []
    for m in fm.codes:
        if m.value_set is not None:
            if m.value_set not in sets:
                sets.append(m.value_set)
            continue
        name = m.system.rstrip("/").rsplit("/", 1)[-1]
        by_system.setdefault(name, []).append(m.code or f"{m.code_prefix}*")
    parts = [f"{s} {', '.join(dict.fromkeys(c))}" for s, c in by_system.items()]
    parts += [f"SNOMED value set {s}" for s in sets]
    return "; ".join(parts)


def extract(
    mapping: ServiceMapping,
    prefetch: Mapping[str, Any] | None,
    now: datetime,
    units: UnitTable = DEFAULT_UNITS,
    patient: str | None = None,
) -> Extraction:
    """Map a CDS request's prefetch to the JSON API's inputs.

    patient: the hook's context.patientId; resources whose subject names another Patient are
    ignored (and counted in Extraction.notices).
    Raises InvalidClinicalData (every malformed element, with its path) before
    MissingClinicalData (every missing input, named), so one call reports all of a kind.
    """
    ex = _Extractor(mapping, now, units, patient)
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
            value, item = result
            if (prefetch or {}).get(fm.prefetch, {}) is None and fm.when_prefetch_null:
                note = f"prefetch {fm.prefetch!r} was null (no data): {fm.when_prefetch_null}"
                item = replace(item, note=note)
            inputs[fm.input], extracted[fm.input] = value, item
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
    notices = []
    if ex.other_patient:
        notices.append(
            f"{ex.other_patient} prefetched resource(s) about another patient than this one were "
            "ignored; check the CDS client's prefetch"
        )
    return Extraction(inputs, extracted, tuple(notices))
