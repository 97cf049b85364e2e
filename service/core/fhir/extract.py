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

from service.core.fhir.mapping import CodeMatch, EventMapping, FeatureMapping, ServiceMapping
from service.core.fhir.values import (
    codings,
    effective_time,
    fmt,
    is_number,
    match_code,
    parse_fhir_datetime,
)
from service.core.kinds import MODEL_KINDS
from service.core.rules import InputRule
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
COUNTED_ADMINISTRATION = ("in-progress", "completed", "stopped")
"""MedicationAdministration.status values that mean the drug was (or is being) given; a stopped
one ran until effectivePeriod.end. not-done, on-hold, entered-in-error and unknown are skipped."""
COUNTED_PROCEDURE = ("in-progress", "completed")
"""Procedure.status values an event (the ECMO start) is read from."""
WEIGHT_INPUT = "body_weight"
"""The input a per-patient rate (ug/min, U/h) is divided by (core.rules.Collector.quantity)."""


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
    parts: Mapping[str, Source] = field(default_factory=dict)
    """rates: drug -> the administration its rate came from (to point errors at it)."""
    resource: str = "Observation"
    """The resource type the sources are (for how a card names them)."""


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
        member, _, sub = rest.partition(".")
        if member in item.parts:
            base = item.parts[member].value_path
            base += ".code" if sub == "unit" else ".value"
            return FieldError(base, error.message, error.rule, error.allowed)
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
        self.events: dict[str, Source | None] = {}
        self.needs_weight: list[str] = []
        self.weighed: set[str] = set()
        """Inputs with a rate per patient (divided by the body weight)."""
        kind = MODEL_KINDS[mapping.kind]
        self.member_rules: dict[str, Mapping[str, InputRule]] = {
            f.name: f.members for f in kind.inputs if f.members
        }

    def bundle(
        self, prefetch: Mapping[str, Any], fm: FeatureMapping
    ) -> tuple[list[tuple[str, dict[str, Any]]], bool] | None:
        """The Bundle's (path, resource) entries and whether it is complete; None if unusable."""
        return self.bundle_of(prefetch, fm.prefetch, fm.label, fm.when_prefetch_null is not None)

    def bundle_of(
        self, prefetch: Mapping[str, Any], key: str, label: str, null_means_none: bool
    ) -> tuple[list[tuple[str, dict[str, Any]]], bool] | None:
        where = f"prefetch.{key}"
        if key not in prefetch:
            self.missing.append(
                FieldError(
                    where,
                    f"{label}: prefetch key {key!r} was not provided, and this service does not "
                    "query FHIR servers",
                    "missing",
                    self.mapping.prefetch[key],
                )
            )
            return None
        doc = prefetch[key]
        if doc is None and null_means_none:
            return [], True  # no data in the EHR, and the mapping says what that means
        if doc is None:
            self.missing.append(
                FieldError(
                    where,
                    f"{label}: prefetch {key!r} is null (no data)",
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
                    f"{label}: the CDS client could not prefetch {key!r} (OperationOutcome{said})",
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
        if res["resourceType"] == "MedicationAdministration":
            dosage = res.get("dosage")
            dose = dosage.get("dose") if isinstance(dosage, dict) else None
            if dose is None:
                return None, "without a dosage.dose"
            return self.quantity_source(fm, path, f"{path}.dosage.dose", dose, when, "dose")
        if "valueQuantity" in res:
            return self.quantity_source(
                fm, path, f"{path}.valueQuantity", res["valueQuantity"], when, "valueQuantity"
            )
        return self.other_value(fm, path, res, when)

    def quantity_source(
        self,
        fm: FeatureMapping,
        path: str,
        vpath: str,
        vq: Any,
        when: datetime,
        element: str,
    ) -> tuple[Source | None, str | None]:
        """A Quantity (Observation.valueQuantity, MedicationAdministration.dosage.dose)."""
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
                        f"{fm.label} needs a UCUM unit code ({element}.unit is display "
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

    def other_value(
        self, fm: FeatureMapping, path: str, res: Mapping[str, Any], when: datetime
    ) -> tuple[Source | None, str | None]:
        """valueInteger, a dataAbsentReason, or a value[x] that cannot be read."""
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

    def matching(
        self,
        resource: str,
        codes: Sequence[CodeMatch],
        entries: Sequence[tuple[str, dict[str, Any]]],
        counted: Sequence[str],
        skipped: _Skipped | None = None,
    ) -> tuple[list[tuple[str, dict[str, Any], tuple[CodeMatch, str]]], int]:
        """The entries of `resource` coded in `codes` whose status is counted, each with the code
        it matched and its display; and how many reference a Medication the Bundle lacks (whether
        they count cannot be told). A missing status is an error; another is noted in skipped."""
        index = _index(entries)
        found: list[tuple[str, dict[str, Any], tuple[CodeMatch, str]]] = []
        unidentified = 0
        for path, res in entries:
            if res["resourceType"] != resource:
                continue
            concept = _code_of(res, index)
            if concept is None:
                unidentified += 1
                continue
            hit = match_code(codes, concept)
            if hit is None:
                continue
            status = res.get("status")
            if status not in counted:
                if not isinstance(status, str):
                    self.errors.append(
                        FieldError(f"{path}.status", f"{resource}.status is required", "required")
                    )
                elif skipped is not None:
                    skipped.add(f"with status {status}")
                continue
            found.append((path, res, hit))
        return found, unidentified

    def observations(
        self, fm: FeatureMapping, entries: Sequence[tuple[str, dict[str, Any]]], complete: bool
    ) -> tuple[Any, ExtractedInput] | None:
        skipped = _Skipped()
        candidates: list[_Candidate] = []
        counted = (
            ACCEPTED_OBSERVATION_STATUS if fm.resource == "Observation" else COUNTED_ADMINISTRATION
        )
        found, unidentified = self.matching(fm.resource, fm.codes, entries, counted, skipped)
        for path, res, _ in found:
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
        sets = dict.fromkeys(f"value set {m.value_set}" for m in fm.codes if m.value_set)
        codes = ", ".join([m.describe() for m in fm.codes if not m.value_set] + list(sets))
        if unidentified:
            self.missing.append(self.unidentified(fm.prefetch, fm.label, unidentified))
            return None
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
                    f"{fm.label}: no usable {fm.resource} ({', '.join(counted)}) "
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
                fm.input,
                fm.label,
                "sum",
                True,
                tuple(c.source for c in candidates),
                fm.prefetch,
                resource=fm.resource,
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
        index = _index(entries)
        for path, res in entries:
            if res["resourceType"] != fm.resource:
                continue
            if match_code(fm.codes, _code_of(res, index)) is None:
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

    # ---- MedicationAdministration: infusion rates running at a time point

    def unidentified(self, key: str, label: str, n: int) -> FieldError:
        return FieldError(
            f"prefetch.{key}",
            f"{label}: {n} MedicationAdministration(s) reference a Medication that is not in "
            "the Bundle, so whether they count cannot be told",
            "medication_unresolved",
            "_include=MedicationAdministration:medication in the prefetch template",
        )

    def event(self, prefetch: Mapping[str, Any], ev: EventMapping) -> Source | None:
        """The latest start of a matching Procedure (in-progress or completed): the current
        run. None (with the reason in self.missing) when there is none or the Bundle is cut."""
        if ev.name in self.events:
            return self.events[ev.name]
        self.events[ev.name] = None
        got = self.bundle_of(prefetch, ev.prefetch, ev.label, False)
        if got is None:
            return None
        entries, complete = got
        found: list[Source] = []
        skipped = _Skipped()
        for path, res in entries:
            if res["resourceType"] != ev.resource:
                continue
            hit = match_code(ev.codes, res.get("code"))
            if hit is None:
                continue
            if res.get("status") not in COUNTED_PROCEDURE:
                skipped.add(f"with status {res.get('status')}")
                continue
            period = res.get("performedPeriod")
            key, raw = (
                ("performedPeriod.start", period.get("start"))
                if isinstance(period, dict)
                else ("performedDateTime", res.get("performedDateTime"))
            )
            if raw is None:
                skipped.add("without a performed start")
                continue
            try:
                when = parse_fhir_datetime(raw)
            except ValueError as exc:
                self.errors.append(
                    FieldError(f"{path}.{key}", f"not a FHIR dateTime: {exc}", "datetime")
                )
                continue
            if when is None:
                skipped.add("with a date but no time of day")
                continue
            if when > self.now + FUTURE_TOLERANCE:
                skipped.add("dated in the future")
                continue
            found.append(Source(path, f"{path}.{key}", when, None, None, f"{ev.label}: {hit[1]}"))
        if not complete:
            self.missing.append(
                FieldError(
                    f"prefetch.{ev.prefetch}",
                    f"{ev.label}: the {ev.prefetch!r} Bundle is paginated (link next); the latest "
                    "start needs every Procedure",
                    "incomplete",
                    "a larger _count in the prefetch template",
                )
            )
            return None
        if not found:
            self.missing.append(
                FieldError(
                    f"prefetch.{ev.prefetch}",
                    f"{ev.label}: no {ev.resource} ({', '.join(COUNTED_PROCEDURE)}) with a start "
                    f"time coded {_describe_codes(ev.codes)} ({skipped.describe()} skipped)",
                    "missing",
                    self.mapping.prefetch[ev.prefetch],
                )
            )
            return None
        latest = max(found, key=lambda src: src.effective or datetime.min.replace(tzinfo=UTC))
        self.events[ev.name] = latest
        return latest

    def rates(
        self,
        fm: FeatureMapping,
        entries: Sequence[tuple[str, dict[str, Any]]],
        complete: bool,
        prefetch: Mapping[str, Any],
    ) -> tuple[Any, ExtractedInput] | None:
        """Every drug's rate running at the time point (event + offset), summed per drug; a drug
        with none running is left out (0 in the VIS), which needs a complete Bundle."""
        assert fm.at is not None  # the loader requires it for value rates
        ev = self.mapping.events[fm.at.event]
        start = self.event(prefetch, ev)
        if start is None or start.effective is None:
            return None
        at = start.effective + timedelta(hours=fm.at.offset_hours)
        offset = f" + {_hours(fm.at.offset_hours)}" if fm.at.offset_hours else ""
        when = f"{ev.label}{offset} ({_time(at)})"
        where = f"prefetch.{fm.prefetch}"
        if at > self.now + FUTURE_TOLERANCE:
            self.missing.append(
                FieldError(
                    where,
                    f"{fm.label}: read at {when}, which has not come yet",
                    "not_yet",
                    f"a call after {_time(at)}",
                )
            )
            return None
        assert fm.window_hours is not None  # required for MedicationAdministration
        if at < self.now - timedelta(hours=fm.window_hours):
            self.missing.append(
                FieldError(
                    where,
                    f"{fm.label}: read at {when}, more than {_hours(fm.window_hours)} ago (the "
                    "mapping's window)",
                    "missing",
                    self.mapping.prefetch[fm.prefetch],
                )
            )
            return None
        if not complete:
            self.missing.append(
                FieldError(
                    where,
                    f"{fm.label}: the {fm.prefetch!r} Bundle is paginated (link next); the rates "
                    "running at a time need every administration",
                    "incomplete",
                    "a larger _count in the prefetch template",
                )
            )
            return None
        running: dict[str, list[tuple[str, Mapping[str, Any], CodeMatch, str]]] = {}
        missing_before = len(self.missing)
        found, unidentified = self.matching(
            "MedicationAdministration", fm.codes, entries, COUNTED_ADMINISTRATION
        )
        for path, res, hit in found:
            status = res["status"]
            span = self.period(path, res)
            if span is None:
                continue  # a bolus (effectiveDateTime), or reported as an error
            begin, end = span
            if begin > at:
                continue
            if end is None and status != "in-progress":
                self.missing.append(
                    FieldError(
                        f"{path}.effectivePeriod.end",
                        f"{fm.label}: a {status} {hit[0].member} infusion that began before "
                        f"{_time(at)} has no end time, so whether it ran at {when} is unknown",
                        "missing",
                        "effectivePeriod.end",
                    )
                )
                continue
            if end is not None and end <= at:
                continue
            member = hit[0].member
            assert member is not None  # the loader groups every rates code by drug
            running.setdefault(member, []).append((path, res, hit[0], hit[1]))
        if unidentified:
            self.missing.append(self.unidentified(fm.prefetch, fm.label, unidentified))
        if len(self.missing) > missing_before:
            return None
        salted = {c.member for c in fm.codes if c.salt is not None}
        value: dict[str, Any] = {}
        sources = [start]
        parts: dict[str, Source] = {}
        shown: list[str] = []
        for drug, items in sorted(running.items()):
            read = [self.rate(fm, drug, path, res) for path, res, _, _ in items]
            if any(r is None for r in read):
                continue
            units = {r[1] for r in read if r is not None}
            salts = {m.salt for _, _, m, _ in items}
            if drug in salted and None in salts:
                code = next(d for _, _, m, d in items if m.salt is None)
                self.missing.append(
                    FieldError(
                        f"{items[0][0]}.medication",
                        f"{fm.label}: {drug} coded {code!r} does not say which salt the rate is "
                        "of (base or a bitartrate hydrate differ by up to 2x)",
                        "unknown_salt",
                        "a code of the base substance",
                    )
                )
                continue
            if len(units) > 1 or len(salts) > 1:
                self.missing.append(
                    FieldError(
                        where,
                        f"{fm.label}: {len(items)} {drug} infusions run at {when} in different "
                        f"units ({', '.join(sorted(units))}); they cannot be added up",
                        "mixed_units",
                    )
                )
                continue
            total = math.fsum(r[0] for r in read if r is not None)
            unit = units.pop()
            qty: dict[str, Any] = {"value": total, "unit": unit}
            salt = salts.pop()
            if salt is not None:
                qty["salt"] = salt
            value[drug] = qty
            for (path, _, _, display), r in zip(items, read, strict=True):
                assert r is not None
                src = Source(path, r[2], at, r[0], unit, f"{display} {fmt(r[0])} {unit}")
                sources.append(src)
                parts[drug] = src
            shown.append(f"{drug} {fmt(total)} {unit}")
        if len(self.missing) > missing_before:
            return None
        note = f"running at {when}: {', '.join(shown) or 'none of the VIS drugs'}"
        item = ExtractedInput(
            fm.input, fm.label, "running_at", True, tuple(sources), fm.prefetch, note, parts
        )
        return value, item

    def period(self, path: str, res: Mapping[str, Any]) -> tuple[datetime, datetime | None] | None:
        """effectivePeriod (start, end or None); None for a one-time administration."""
        period = res.get("effectivePeriod")
        if not isinstance(period, dict):
            return None
        out: list[datetime | None] = []
        for key in ("start", "end"):
            if key not in period:
                out.append(None)
                continue
            try:
                t = parse_fhir_datetime(period[key])
            except ValueError as exc:
                self.errors.append(
                    FieldError(
                        f"{path}.effectivePeriod.{key}", f"not a FHIR dateTime: {exc}", "datetime"
                    )
                )
                return None
            if t is None:
                self.errors.append(
                    FieldError(
                        f"{path}.effectivePeriod.{key}",
                        "an infusion needs a time of day, not only a date",
                        "datetime",
                    )
                )
                return None
            out.append(t)
        if out[0] is None:
            self.errors.append(
                FieldError(f"{path}.effectivePeriod.start", "an infusion needs a start", "required")
            )
            return None
        return out[0], out[1]

    def rate(
        self, fm: FeatureMapping, drug: str, path: str, res: Mapping[str, Any]
    ) -> tuple[float, str, str] | None:
        """(value, UCUM unit, element path) of dosage.rateQuantity or dosage.rateRatio; an
        unreadable or unknown unit is missing data (412), never a guess."""
        dosage = res.get("dosage")
        dosage = dosage if isinstance(dosage, dict) else {}
        value: Any = None
        unit: Any = None
        if isinstance(dosage.get("rateQuantity"), dict):
            q = dosage["rateQuantity"]
            vpath = f"{path}.dosage.rateQuantity"
            value, unit, system = q.get("value"), q.get("code"), q.get("system")
            systems = [system]
        elif isinstance(dosage.get("rateRatio"), dict):
            ratio = dosage["rateRatio"]
            num, den = ratio.get("numerator"), ratio.get("denominator")
            vpath = f"{path}.dosage.rateRatio.numerator"
            if isinstance(num, dict) and isinstance(den, dict):
                nv: Any = num.get("value")
                dv: Any = den.get("value", 1)
                systems = [num.get("system"), den.get("system")]
                if is_number(nv) and is_number(dv) and dv > 0:
                    value = float(nv) / float(dv)
                    if isinstance(num.get("code"), str) and isinstance(den.get("code"), str):
                        unit = f"{num['code']}/{den['code']}"
            else:
                systems = []
        else:
            vpath, systems = f"{path}.dosage", []
        rule = fm_rule = None
        if isinstance(unit, str):
            fm_rule = self.member_rules.get(fm.input, {}).get(drug)
            rule = self.units.rule(fm_rule.quantity, unit) if fm_rule and fm_rule.quantity else None
        if not is_number(value) or any(s not in (None, UCUM) for s in systems) or rule is None:
            accepted = (
                ", ".join(self.units.accepted(fm_rule.quantity))
                if fm_rule is not None and fm_rule.quantity
                else "a rate in UCUM"
            )
            got = f"{fmt(float(value))} {unit}" if is_number(value) and unit else "no readable rate"
            self.missing.append(
                FieldError(
                    vpath,
                    f"{fm.label}: the {drug} rate cannot be read ({got}); a rate per kg or per "
                    "patient in UCUM is needed (a pump rate in mL/h needs the concentration)",
                    "unit",
                    accepted,
                )
            )
            return None
        if rule.per_weight:
            self.needs_weight.append(f"{drug} {fmt(float(value))} {unit}")
            self.weighed.add(fm.input)
        assert isinstance(unit, str)
        return float(value), unit, vpath

    # ---- Condition

    def conditions(
        self, fm: FeatureMapping, entries: Sequence[tuple[str, dict[str, Any]]], complete: bool
    ) -> tuple[Any, ExtractedInput] | None:
        found: list[Source] = []
        skipped = _Skipped()
        for path, res in entries:
            if res["resourceType"] != "Condition":
                continue
            hit = match_code(fm.codes, res.get("code"))
            if hit is None:
                continue
            display = hit[1]
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
        counts = f"counted: confirmed Conditions coded {_describe_codes(fm.codes)}"
        if skipped.counts:
            counts += f"; not counted: {skipped.describe()}"
        note = counts if found else f"none recorded ({counts})"
        return bool(found), ExtractedInput(
            fm.input, fm.label, "any", False, tuple(found), fm.prefetch, note
        )


def _index(entries: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Type/id -> resource, for references between entries (an _include'd Medication)."""
    out: dict[str, dict[str, Any]] = {}
    for _, res in entries:
        rid = res.get("id")
        if isinstance(rid, str):
            out[f"{res['resourceType']}/{rid}"] = res
    return out


def _code_of(res: Mapping[str, Any], index: Mapping[str, Mapping[str, Any]]) -> Any:
    """The CodeableConcept a resource is matched on; for a MedicationAdministration its
    medicationCodeableConcept or the code of the Medication it references (contained, or an
    entry of the same Bundle). None: a referenced Medication that is not there."""
    # Only a missing Medication is None: an uncoded resource simply matches nothing.
    if res.get("resourceType") != "MedicationAdministration":
        return res.get("code") or {}
    if "medicationCodeableConcept" in res:
        return res["medicationCodeableConcept"] or {}
    ref = res.get("medicationReference")
    reference = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(reference, str):
        return None
    target: Any = None
    if reference.startswith("#"):
        contained = res.get("contained")
        for c in contained if isinstance(contained, list) else []:
            if isinstance(c, dict) and c.get("id") == reference[1:]:
                target = c
    else:
        parts = reference.split("/_history/")[0].rstrip("/").split("/")
        target = index.get("/".join(parts[-2:]))
    if not isinstance(target, dict) or target.get("resourceType") != "Medication":
        return None
    return target.get("code") or {}


def _hours(h: float) -> str:
    return f"{fmt(h)} h"


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _time_of(source: Source) -> str:
    return _time(source.effective) if source.effective is not None else "time not recorded"


def _describe_codes(codes: Sequence[CodeMatch]) -> str:
    """Short: the code systems with their prefixes, and each value set by name."""
    by_system: dict[str, list[str]] = {}
    sets: list[str] = []
    for m in codes:
        if m.value_set is not None:
            if m.value_set not in sets:
                sets.append(m.value_set)
            continue
        name = m.system.rstrip("/").rsplit("/", 1)[-1]
        by_system.setdefault(name, []).append(m.code or f"{m.code_stem or m.code_prefix}*")
    parts = [f"{s} {', '.join(dict.fromkeys(c))}" for s, c in by_system.items()]
    parts += [f"value set {s}" for s in sets]
    return "; ".join(parts)


def _one(
    ex: _Extractor, fm: FeatureMapping, prefetch: Mapping[str, Any]
) -> tuple[Any, ExtractedInput] | None:
    """One source of an input; None with the reason in ex.missing (or ex.errors)."""
    if fm.at is not None:  # rates at an event: both its Bundle and the event's are needed
        ex.event(prefetch, ex.mapping.events[fm.at.event])
    got = ex.bundle(prefetch, fm)
    if got is None:
        return None
    entries, complete = got
    if fm.value == "rates":
        return ex.rates(fm, entries, complete, prefetch)
    if fm.resource == "Condition":
        return ex.conditions(fm, entries, complete)
    return ex.observations(fm, entries, complete)


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
    kind = MODEL_KINDS[mapping.kind]
    instead = {alt: name for name, alts in kind.alternatives.items() for alt in alts}
    groups: dict[str, list[FeatureMapping]] = {}
    for fm in mapping.features:  # file order is the order of precedence within a group
        groups.setdefault(instead.get(fm.input, fm.input), []).append(fm)
    absent_optional: dict[str, list[FieldError]] = {}
    for group in groups.values():
        before = len(ex.missing)
        chosen: tuple[FeatureMapping, Any, ExtractedInput] | None = None
        none_found: list[tuple[FeatureMapping, Any, ExtractedInput]] = []
        for fm in group:
            result = _one(ex, fm, prefetch or {})
            if result is None:
                continue
            value, item = result
            if item.sources:
                chosen = (fm, value, item)
                break
            none_found.append((fm, value, item))
        if chosen is not None:
            del ex.missing[before:]  # an earlier source had nothing: this one is used instead
        elif none_found and len(ex.missing) == before:
            chosen = none_found[0]  # every source is complete and has none: its meaning applies
        if chosen is None:
            if all(fm.optional for fm in group):
                absent_optional[group[0].input] = ex.missing[before:]
                del ex.missing[before:]
            continue
        fm, value, item = chosen
        if (prefetch or {}).get(fm.prefetch, {}) is None and fm.when_prefetch_null:
            note = f"prefetch {fm.prefetch!r} was null (no data): {fm.when_prefetch_null}"
            item = replace(item, note=note)
        inputs[fm.input], extracted[fm.input] = value, item
    weight = extracted.get(WEIGHT_INPUT)
    if weight is not None and weight.sources:
        w = weight.sources[0]
        for name in ex.weighed & set(extracted):
            said = f"; rates per patient divided by the body weight {w.display} ({_time_of(w)})"
            extracted[name] = replace(extracted[name], note=f"{extracted[name].note}{said}")
    if ex.needs_weight and WEIGHT_INPUT not in inputs:
        why = absent_optional.get(WEIGHT_INPUT, [])
        said = f" ({'; '.join(e.message for e in why)})" if why else ""
        ex.missing.append(
            FieldError(
                why[0].path if why else "prefetch",
                f"body weight: needed to convert {', '.join(ex.needs_weight)} to a rate per kg, "
                f"and none was found{said}",
                "requires_body_weight",
                why[0].allowed if why else None,
            )
        )
    if ex.errors:
        unique = list(dict.fromkeys(ex.errors))
        raise InvalidClinicalData(
            f"{len(unique)} prefetched FHIR element(s) cannot be used", unique
        )
    if ex.missing:
        ex.missing = list(dict.fromkeys(ex.missing))
        names = ", ".join(dict.fromkeys(e.message.split(":", 1)[0] for e in ex.missing))
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
