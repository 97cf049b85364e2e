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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from service.core.kinds import MODEL_KINDS
from service.core.kinds.base import ModelKind
from service.core.units import DEFAULT_UNITS

MAPPING_VERSION = 1
VALUE_KINDS = ("quantity", "number", "integer", "presence")
SELECTS = {
    "quantity": ("latest", "min", "max", "sum"),
    "number": ("latest", "min", "max"),
    "integer": ("latest", "min", "max"),
    "presence": ("any",),
}
RESOURCES = {"Observation": ("quantity", "number", "integer"), "Condition": ("presence",)}

MAPPABLE = ("integer", "number", "quantity", "boolean")
"""Input types one FHIR value can give (not infusion rates, which are several)."""


class MappingError(ValueError):
    """A mapping file is unusable; raised at start-up, naming the file and the field."""


@dataclass(frozen=True)
class CodeMatch:
    system: str
    code: str | None = None
    code_prefix: str | None = None
    value_set: str | None = None
    """The shipped value set this code came from (for messages)."""

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
    when_prefetch_null: str | None = None
    """The clinical meaning of a null prefetch (CDS Hooks 2.0: a client with no data for a key
    sends null): set only where absence has one (no stroke Condition -> no history; no FFP given
    -> 0 mL). The null is then read as an empty, complete Bundle. Unset: a null gives 412."""
    quantity: str | None = None
    """Key into core.units.UNITS for quantity inputs."""
    unit: str = ""
    """The input's canonical unit."""


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
    features: list[FeatureMapping] = []
    for i, f in enumerate(_req(doc, "features", list, w)):
        fw = f"{w}features[{i}]."
        if not isinstance(f, dict):
            raise MappingError(f"{fw[:-1]} is not an object")
        features.append(_parse_feature(f, fw, prefetch, kind))
    required, optional = set(kind.column_form), set(kind.fhir_optional)
    names = [f.input for f in features]
    if len(set(names)) != len(names):
        raise MappingError(f"{w}an input is mapped twice: {names}")
    if missing := required - set(names):
        raise MappingError(f"{w}inputs {sorted(missing)} are required for kind {kind.name}")
    if unknown := set(names) - required - optional:
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
    )


def _parse_feature(
    f: Mapping[str, Any], w: str, prefetch: Mapping[str, str], kind: ModelKind
) -> FeatureMapping:
    name = _req(f, "input", str, w)
    fields = {i.name: i for i in kind.inputs if i.type in MAPPABLE}
    if name not in fields:
        raise MappingError(f"{w}input {name!r} is not an input of the JSON API for {kind.name}")
    field = fields[name]
    qty = field.rule.quantity if field.rule is not None else None
    key = _req(f, "prefetch", str, w)
    if key not in prefetch:
        raise MappingError(f"{w}prefetch {key!r} is not a key of the mapping's prefetch")
    resource = _req(f, "resource", str, w)
    if resource not in RESOURCES:
        raise MappingError(f"{w}resource must be one of {sorted(RESOURCES)}")
    value = _req(f, "value", str, w)
    if value not in RESOURCES[resource]:
        raise MappingError(f"{w}value {value!r} is not allowed for {resource}")
    if (value == "presence") != (field.type == "boolean"):
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
        if "value_set" in c:
            if set(c) != {"value_set"} or not isinstance(c["value_set"], str):
                raise MappingError(f"{cw[:-1]} with value_set takes nothing else")
            codes.extend(load_value_set(c["value_set"], cw))
            continue
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
        unit=field.rule.unit if field.rule is not None else "",
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
    out = []
    for item in contains:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("system"), str)
            and isinstance(item.get("code"), str)
        ):
            raise MappingError(f"{where}value_set {name!r}: an entry lacks system or code")
        out.append(CodeMatch(item["system"], item["code"], None, name))
    return out


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
