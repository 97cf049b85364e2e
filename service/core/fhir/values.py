"""FHIR element readers: dateTime, effective[x], CodeableConcept codings, numbers."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.core.fhir.mapping import CodeMatch, FeatureMapping
from service.errors import FieldError

# FHIR R4's dateTime grammar (datatypes.html#dateTime), read into groups: a year, year-month,
# date, or date with a time of day that has seconds and a zone. Python's fromisoformat accepts
# more (no seconds, basic format, week dates), which FHIR does not.
_FHIR_DATETIME = re.compile(
    r"(?P<year>[0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(?P<month>0[1-9]|1[0-2])"
    r"(-(?P<day>0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9]):(?P<second>[0-5][0-9]|60)"
    r"(\.(?P<fraction>[0-9]+))?"
    r"(?P<zone>Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)


def parse_fhir_datetime(raw: Any) -> datetime | None:
    """FHIR dateTime/instant -> aware datetime; None when only a date (no time of day) is given.

    Raises ValueError when the string is not a FHIR dateTime at all.
    """
    if not isinstance(raw, str):
        raise ValueError("not a string")
    m = _FHIR_DATETIME.fullmatch(raw)
    if m is None:
        if "T" in raw and re.fullmatch(r"[0-9-]+T[0-9:.]+", raw):
            raise ValueError("a dateTime with a time of day must carry a time zone")
        raise ValueError(
            "not a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz)"
        )
    if m["hour"] is None:
        if m["day"] is not None:
            date(int(m["year"]), int(m["month"]), int(m["day"]))  # 2026-02-30 is refused
        # year, year-month or date: valid FHIR but too coarse for an hour window
        return None
    # A leap second (:60) is in FHIR's grammar; datetime has none, so it reads as the next second.
    leap = m["second"] == "60"
    zone = UTC if m["zone"] == "Z" else datetime.strptime(m["zone"], "%z").tzinfo
    value = datetime(
        int(m["year"]),
        int(m["month"]),
        int(m["day"]),
        int(m["hour"]),
        int(m["minute"]),
        59 if leap else int(m["second"]),
        int((m["fraction"] or "0")[:6].ljust(6, "0")),
        tzinfo=zone,
    )
    if leap:
        value += timedelta(seconds=1)
    return value.astimezone(UTC)


def effective_time(
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


def codings(concept: Any) -> list[tuple[Any, Any, Any]]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [
        (c.get("system"), c.get("code"), c.get("display")) for c in codings if isinstance(c, dict)
    ]


def matches(fm: FeatureMapping, concept: Any) -> str | None:
    found = match_code(fm.codes, concept)
    return found[1] if found is not None else None


def match_code(codes: Sequence[CodeMatch], concept: Any) -> tuple[CodeMatch, str] | None:
    """The first of codes that one of concept's codings matches, with that coding's display."""
    for system, code, display in codings(concept):
        for m in codes:
            if m.matches(system, code):
                return m, str(display or code)
    return None


def is_number(v: Any) -> bool:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer literal too large for a float
        return False


def fmt(v: float) -> str:
    return f"{v:g}"
