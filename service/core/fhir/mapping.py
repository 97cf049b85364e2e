"""FHIR mapping files: the data that says which FHIR resources give which input of a model kind.

A JSON file per CDS service (shipped defaults in the service.cds_mappings package, replaceable by a
directory named in ECMO_FHIR_MAPPING_DIR) names the prefetch templates, the code systems and codes
of each input, the value kind, the time window and how one value is chosen among several
resources (latest, min, max, sum, any). load_mappings() checks every file at start-up and raises
MappingError naming the file and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from service.core.kinds import MODEL_KINDS
from service.core.kinds.base import ModelKind
from service.core.units import DEFAULT_UNITS

MAPPING_VERSION = 1
VALUE_KINDS = ("quantity", "number", "integer", "presence", "rates")
SELECTS = {
    "quantity": ("latest", "min", "max", "sum"),
    "number": ("latest", "min", "max"),
    "integer": ("latest", "min", "max"),
    "presence": ("any",),
    "rates": ("running_at",),
}
RESOURCES = {
    "Observation": ("quantity", "number", "integer"),
    "Condition": ("presence",),
    # dosage.dose (a volume given, summed) or dosage.rate[x] (infusion rates running at a time)
    "MedicationAdministration": ("quantity", "rates"),
}
EVENT_RESOURCES = ("Procedure",)
"""Resources an event (a time point such as the ECMO start) is read from."""

MAPPABLE = ("integer", "number", "quantity", "boolean", "infusions")
"""Input types a mapping can produce (infusions: several drug rates, from value "rates")."""


class MappingError(ValueError):
    """A mapping file is unusable; raised at start-up, naming the file and the field."""


@dataclass(frozen=True)
class CodeMatch:
    system: str
    code: str | None = None
    code_prefix: str | None = None
    """ICD-style: the code itself or any subcode after a dot (I63 matches I63.4, not I630)."""
    value_set: str | None = None
    """The shipped value set this code came from (for messages)."""
    code_stem: str | None = None
    """Any code that starts with this text (OPS 8-852.0 matches 8-852.05, whose last level has
    no dot of its own)."""
    member: str | None = None
    """For a value set grouped by member (the VIS drugs): the member this code stands for."""
    salt: str | None = None
    """The salt a dose coded so is of (norepinephrine base); None: not stated by the code."""

    def matches(self, system: Any, code: Any) -> bool:
        if system != self.system or not isinstance(code, str):
            return False
        if self.code is not None:
            return code == self.code
        if self.code_stem is not None:
            return code.startswith(self.code_stem)
        assert self.code_prefix is not None  # guaranteed by the loader
        return code == self.code_prefix or code.startswith(self.code_prefix + ".")

    def describe(self) -> str:
        if self.code is not None:
            return f"{self.system}|{self.code}"
        return f"{self.system}|{self.code_stem or self.code_prefix}*"


@dataclass(frozen=True)
class EventMapping:
    """A time point read from the chart (e.g. the ECMO start, from a Procedure's start)."""

    name: str
    label: str
    prefetch: str
    resource: str
    codes: tuple[CodeMatch, ...]


@dataclass(frozen=True)
class TimePoint:
    """When rates are read: an event plus an offset (ECMO start + 24 h)."""

    event: str
    offset_hours: float


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
    when_prefetch_null: str | None = None
    """The clinical meaning of a null prefetch (CDS Hooks 2.0: a client with no data for a key
    sends null): set only where absence has one (no stroke Condition -> no history; no FFP given
    -> 0 mL). The null is then read as an empty, complete Bundle. Unset: a null gives 412."""
    quantity: str | None = None
    """Key into core.units.UNITS for quantity inputs."""
    unit: str = ""
    """The input's canonical unit."""
    at: TimePoint | None = None
    """value rates: the time point at which the running infusions are read."""
    optional: bool = False
    """No usable resource is not by itself missing data (body weight: needed only when a rate
    is per patient, and then asked for by name)."""


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
    events: dict[str, EventMapping] = field(default_factory=dict)

    def search_since(self, now: datetime) -> dict[str, datetime]:
        """Prefetch key -> the oldest time any of its inputs can use, for the keys whose every
        input has a window (the service's own FHIR searches add it as a date filter; the
        extractor still applies each input's exact window). Keys read without a window (a
        Condition, an event) are not filtered."""
        windows: dict[str, list[float]] = {}
        unbounded = {ev.prefetch for ev in self.events.values()}
        for fm in self.features:
            if fm.window_hours is None:
                unbounded.add(fm.prefetch)
            else:
                windows.setdefault(fm.prefetch, []).append(fm.window_hours)
        return {
            key: now - timedelta(hours=max(hours))
            for key, hours in windows.items()
            if key not in unbounded
        }


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
    kind_name = _req(doc, "kind", str, w)
    kind = MODEL_KINDS.get(kind_name)
    if kind is None:
        raise MappingError(f"{w}kind {kind_name!r} is not one of {sorted(MODEL_KINDS)}")
    prefetch = _req(doc, "prefetch", dict, w)
    for key, template in prefetch.items():
        if not isinstance(template, str) or not template:
            raise MappingError(f"{w}prefetch.{key} must be a FHIR query template")
    events: dict[str, EventMapping] = {}
    raw_events = doc.get("events", {})
    if not isinstance(raw_events, dict):
        raise MappingError(f"{w}events must be an object")
    for name, ev in raw_events.items():
        events[name] = _parse_event(name, ev, f"{w}events.{name}.", prefetch)
    features: list[FeatureMapping] = []
    for i, f in enumerate(_req(doc, "features", list, w)):
        fw = f"{w}features[{i}]."
        if not isinstance(f, dict):
            raise MappingError(f"{fw[:-1]} is not an object")
        features.append(_parse_feature(f, fw, prefetch, kind, events))
    required, optional = set(kind.column_form), set(kind.fhir_optional)
    instead = {alt: name for name, alts in kind.alternatives.items() for alt in alts}
    names = [f.input for f in features]
    # An input mapped more than once lists its sources in order of precedence (the first with a
    # usable resource wins; core.fhir.extract); so does a column-form input mapped together with
    # its alternatives (vis_0h, then infusions_0h).
    given = set(names) | {instead[n] for n in names if n in instead}
    if missing := required - given:
        raise MappingError(f"{w}inputs {sorted(missing)} are required for kind {kind.name}")
    if unknown := set(names) - required - optional - set(instead):
        raise MappingError(f"{w}inputs {sorted(unknown)} are not inputs of kind {kind.name}")
    hook = _req(svc, "hook", str, w + "service.")
    if hook != "patient-view":
        raise MappingError(f"{w}service.hook {hook!r}: only patient-view is implemented")
    return ServiceMapping(
        id=_req(svc, "id", str, w + "service."),
        hook=hook,
        title=_req(svc, "title", str, w + "service."),
        description=_req(svc, "description", str, w + "service."),
        model=_req(doc, "model", str, w),
        kind=kind.name,
        prefetch=dict(prefetch),
        features=tuple(features),
        source=source,
        events=events,
    )


def _parse_codes(raw: Any, w: str) -> list[CodeMatch]:
    codes: list[CodeMatch] = []
    if not isinstance(raw, list):
        raise MappingError(f"{w}codes has the wrong type")
    for j, c in enumerate(raw):
        cw = f"{w}codes[{j}]."
        if not isinstance(c, dict):
            raise MappingError(f"{cw[:-1]} is not an object")
        if "value_set" in c:
            if set(c) != {"value_set"} or not isinstance(c["value_set"], str):
                raise MappingError(f"{cw[:-1]} with value_set takes nothing else")
            codes.extend(load_value_set(c["value_set"], cw))
            continue
        system = _req(c, "system", str, cw)
        forms = [c.get(k) for k in ("code", "code_prefix", "code_stem")]
        if sum(x is not None for x in forms) != 1:
            raise MappingError(f"{cw[:-1]} needs exactly one of code, code_prefix, code_stem")
        if not all(isinstance(x, str) and x for x in forms if x is not None):
            raise MappingError(f"{cw[:-1]} code must be a string")
        codes.append(CodeMatch(system, forms[0], forms[1], code_stem=forms[2]))
    if not codes:
        raise MappingError(f"{w}codes is empty")
    return codes


def _prefetch_key(doc: Mapping[str, Any], w: str, prefetch: Mapping[str, str]) -> str:
    key: str = _req(doc, "prefetch", str, w)
    if key not in prefetch:
        raise MappingError(f"{w}prefetch {key!r} is not a key of the mapping's prefetch")
    return key


def _parse_event(name: str, ev: Any, w: str, prefetch: Mapping[str, str]) -> EventMapping:
    if not isinstance(ev, dict):
        raise MappingError(f"{w[:-1]} is not an object")
    key = _prefetch_key(ev, w, prefetch)
    resource = _req(ev, "resource", str, w)
    if resource not in EVENT_RESOURCES:
        raise MappingError(f"{w}resource must be one of {list(EVENT_RESOURCES)}")
    return EventMapping(
        name, _req(ev, "label", str, w), key, resource, tuple(_parse_codes(ev.get("codes"), w))
    )


def _parse_feature(
    f: Mapping[str, Any],
    w: str,
    prefetch: Mapping[str, str],
    kind: ModelKind,
    events: Mapping[str, EventMapping],
) -> FeatureMapping:
    name = _req(f, "input", str, w)
    fields = {i.name: i for i in kind.inputs if i.type in MAPPABLE}
    if name not in fields:
        raise MappingError(f"{w}input {name!r} is not an input of the JSON API for {kind.name}")
    spec = fields[name]
    qty = spec.rule.quantity if spec.rule is not None else None
    key = _prefetch_key(f, w, prefetch)
    resource = _req(f, "resource", str, w)
    if resource not in RESOURCES:
        raise MappingError(f"{w}resource must be one of {sorted(RESOURCES)}")
    value = _req(f, "value", str, w)
    if value not in RESOURCES[resource]:
        raise MappingError(f"{w}value {value!r} is not allowed for {resource}")
    if (value == "presence") != (spec.type == "boolean") or (value == "rates") != (
        spec.type == "infusions"
    ):
        raise MappingError(f"{w}value {value!r} does not fit input {name}")
    if value == "quantity" and qty is None:
        raise MappingError(f"{w}input {name} is unitless: use value number or integer")
    if value in ("number", "integer") and qty is not None:
        raise MappingError(f"{w}input {name} needs a unit: use value quantity")
    select = _req(f, "select", str, w)
    if select not in SELECTS[value]:
        raise MappingError(f"{w}select {select!r} is not one of {SELECTS[value]} for {value}")
    window = f.get("window_hours")
    if window is not None and (
        not isinstance(window, int | float) or isinstance(window, bool) or window <= 0
    ):
        raise MappingError(f"{w}window_hours must be a positive number or null")
    if window is None and resource in ("Observation", "MedicationAdministration"):
        raise MappingError(f"{w}window_hours is required for {resource} inputs")
    if window is not None and resource == "Condition":
        # A history counts whenever it began; a window here would silently not be applied.
        raise MappingError(
            f"{w}window_hours does not apply to Condition inputs (a recorded condition counts "
            "whenever it began): set it to null"
        )
    codes = _parse_codes(_req(f, "codes", list, w), w)
    at: TimePoint | None = None
    if value == "rates":
        members = {c.member for c in codes}
        if None in members or members != set(spec.members):
            raise MappingError(
                f"{w}codes for {name} must group codes by drug, for every one of "
                f"{sorted(spec.members)} (a drug left out would silently count as 0)"
            )
        if bad := {c.salt for c in codes if c.salt is not None} - set(spec.salts):
            raise MappingError(f"{w}codes name salts {sorted(bad)}, not one of {spec.salts}")
        raw_at = _req(f, "at", dict, w)
        event = _req(raw_at, "event", str, w + "at.")
        offset = _req(raw_at, "offset_hours", (int, float), w + "at.")
        if event not in events:
            raise MappingError(f"{w}at.event {event!r} is not one of the mapping's events")
        at = TimePoint(event, float(offset))
    optional = f.get("optional", False)
    if not isinstance(optional, bool) or optional and name not in kind.fhir_optional:
        raise MappingError(f"{w}optional (true/false) is only for inputs {kind.fhir_optional}")
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
        if qty is None or DEFAULT_UNITS.rule(qty, fu) is None:
            raise MappingError(f"{w}when_none_in_window.unit {fu!r} is not a unit of {name}")
    null_meaning = f.get("when_prefetch_null")
    if null_meaning is not None:
        if not isinstance(null_meaning, str) or not null_meaning:
            raise MappingError(f"{w}when_prefetch_null must be a text saying what null means")
        if value != "presence" and fallback is None:
            raise MappingError(
                f"{w}when_prefetch_null needs a meaning for no resource: a Condition input, or "
                "when_none_in_window"
            )
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
        when_prefetch_null=null_meaning,
        quantity=qty if value == "quantity" else None,
        unit=spec.rule.unit if spec.rule is not None else "",
        at=at,
        optional=optional,
    )


def load_value_set(name: str, where: str = "") -> list[CodeMatch]:
    """The codes of a shipped, expanded FHIR ValueSet (service/cds_mappings/valuesets/<name>.json):
    expansion.contains, read once at start-up; no terminology server at run time."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", name):
        raise MappingError(f"{where}value_set {name!r} is not a value set name")
    entry = resources.files("service.cds_mappings") / "valuesets" / f"{name}.json"
    try:
        doc = json.loads(entry.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise MappingError(f"{where}value_set {name!r}: {exc}") from exc
    contains = doc.get("expansion", {}).get("contains") if isinstance(doc, dict) else None
    if doc.get("resourceType") != "ValueSet" or not isinstance(contains, list) or not contains:
        raise MappingError(f"{where}value_set {name!r} is not an expanded FHIR ValueSet")
    out: list[CodeMatch] = []
    for item in contains:
        if isinstance(item, dict) and item.get("abstract") is True and "contains" in item:
            # a group (FHIR expansion.contains.contains): its code names the member, e.g. a drug
            member = item.get("code")
            children = item["contains"]
            if not isinstance(member, str) or not isinstance(children, list) or not children:
                raise MappingError(f"{where}value_set {name!r}: a group lacks code or contains")
            out.extend(_value_set_code(name, child, where, member) for child in children)
        else:
            out.append(_value_set_code(name, item, where, None))
    return out


SALT_EXTENSION = "urn:ecmo-risk-service:StructureDefinition/salt"
"""On a value set code: the salt a dose coded so is of (valueCode, e.g. base)."""


def _value_set_code(name: str, item: Any, where: str, member: str | None) -> CodeMatch:
    if not (
        isinstance(item, dict)
        and isinstance(item.get("system"), str)
        and isinstance(item.get("code"), str)
    ):
        raise MappingError(f"{where}value_set {name!r}: an entry lacks system or code")
    salt = None
    for ext in item.get("extension", []):
        if isinstance(ext, dict) and ext.get("url") == SALT_EXTENSION:
            salt = ext.get("valueCode")
            if not isinstance(salt, str):
                raise MappingError(f"{where}value_set {name!r}: a salt needs a valueCode")
    return CodeMatch(item["system"], item["code"], None, name, member=member, salt=salt)


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
