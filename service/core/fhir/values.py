"""FHIR element readers: dateTime, effective[x], CodeableConcept codings, numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from service.core.fhir.mapping import FeatureMapping
from service.errors import FieldError


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
    for system, code, display in codings(concept):
        if any(m.matches(system, code) for m in fm.codes):
            return str(display or code)
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
