"""A fast path for the request schemas: plain checks that accept only what marshmallow accepts.

marshmallow's generic machinery (field lookup, error stores, nested schema instances, hooks) was
about a fifth of a single prediction's CPU time and most of a batch's. For a body that is fully
valid, `fast_load` returns exactly what `schema.load` returns (same keys, same values, same
Python types). For anything else (an unknown key, a wrong type, a null, a missing field, a
length outside its limits, both or neither of two alternatives) it returns None and the caller
runs the marshmallow schema, which stays the single source of every error message. So a request
can never be accepted here that the schema would refuse, and errors are unchanged.
tests/bench/test_fastload.py checks this against the schemas on generated bodies.
"""

from __future__ import annotations

import math
from typing import Any

_REFERENCES = ("patient_reference", "encounter_reference", "correlation_id")
_PATIENT_KEYS = frozenset(("inputs", *_REFERENCES))
_QUANTITY_KEYS = frozenset(("value", "unit"))
_NOREPINEPHRINE_KEYS = frozenset(("value", "unit", "salt"))
_DRUGS = frozenset(
    ("dopamine", "dobutamine", "epinephrine", "norepinephrine", "milrinone", "vasopressin")
)
_WEANING_KEYS = frozenset(
    (
        "apache_ii",
        "lactate_24h",
        "vis_0h",
        "vis_24h",
        "infusions_0h",
        "infusions_24h",
        "body_weight",
    )
)
_ICH_KEYS = frozenset(
    ("gwr", "grey_matter_hu", "white_matter_hu", "stroke_history", "ffp_volume", "min_platelets")
)


class _Reject(Exception):
    """Not certainly valid: let marshmallow decide (and word the error)."""


def _number(value: Any) -> float:
    """StrictNumber: a JSON number (not a bool), finite."""
    t = type(value)
    if t is float:
        if not math.isfinite(value):
            raise _Reject
        return value  # type: ignore[no-any-return]
    if t is int:
        try:
            number = float(value)
        except OverflowError:
            raise _Reject from None
        return number
    raise _Reject


def _integer(value: Any) -> int:
    """StrictInteger: an int, or a float with an integral finite value."""
    t = type(value)
    if t is int:
        try:
            float(value)  # as the schema: 10**400 is refused
        except OverflowError:
            raise _Reject from None
        return value  # type: ignore[no-any-return]
    if t is float and math.isfinite(value) and value.is_integer():
        return int(value)
    raise _Reject


def _string(value: Any, low: int, high: int) -> str:
    if type(value) is not str or not low <= len(value) <= high:
        raise _Reject
    return value


def _quantity(value: Any, keys: frozenset[str] = _QUANTITY_KEYS) -> dict[str, Any]:
    # _number and _string inlined: a 1,000-patient batch has 2,000 or more quantities.
    if type(value) is not dict:
        raise _Reject
    number: Any = value.get("value")
    unit = value.get("unit")
    t = type(number)
    if t is float:
        if not math.isfinite(number):
            raise _Reject
    elif t is int:
        try:
            number = float(number)
        except OverflowError:
            raise _Reject from None
    else:
        raise _Reject  # missing (None), a bool, a string, ...
    if type(unit) is not str or not 1 <= len(unit) <= 32:
        raise _Reject
    if len(value) == 2:  # exactly "value" and "unit": both were found above
        return {"value": number, "unit": unit}
    if len(value) != 3 or "salt" not in keys or "salt" not in value:
        raise _Reject
    salt = value["salt"]
    if salt != "base" and salt != "bitartrate":
        raise _Reject
    return {"value": number, "unit": unit, "salt": salt}


def _infusions(value: Any) -> dict[str, Any]:
    if type(value) is not dict or not value.keys() <= _DRUGS:
        raise _Reject
    return {
        drug: _quantity(qty, _NOREPINEPHRINE_KEYS if drug == "norepinephrine" else _QUANTITY_KEYS)
        for drug, qty in value.items()
    }


_WEANING_VIS_FORM = frozenset(("apache_ii", "lactate_24h", "vis_0h", "vis_24h"))
_ICH_GWR_FORM = frozenset(("gwr", "stroke_history", "ffp_volume", "min_platelets"))


def _weaning(inputs: Any) -> dict[str, Any]:
    if type(inputs) is not dict:
        raise _Reject
    if inputs.keys() == _WEANING_VIS_FORM:  # the usual form: VIS given, no rates or weight
        return {
            "apache_ii": _integer(inputs["apache_ii"]),
            "lactate_24h": _quantity(inputs["lactate_24h"]),
            "vis_0h": _number(inputs["vis_0h"]),
            "vis_24h": _number(inputs["vis_24h"]),
        }
    if not inputs.keys() <= _WEANING_KEYS:
        raise _Reject
    if ("vis_0h" in inputs) == ("infusions_0h" in inputs):
        raise _Reject
    if ("vis_24h" in inputs) == ("infusions_24h" in inputs):
        raise _Reject
    out: dict[str, Any] = {
        "apache_ii": _integer(inputs.get("apache_ii")),
        "lactate_24h": _quantity(inputs.get("lactate_24h")),
    }
    for key in ("vis_0h", "vis_24h"):
        if key in inputs:
            out[key] = _number(inputs[key])
    for key in ("infusions_0h", "infusions_24h"):
        if key in inputs:
            out[key] = _infusions(inputs[key])
    if "body_weight" in inputs:
        out["body_weight"] = _quantity(inputs["body_weight"])
    return out


def _ich(inputs: Any) -> dict[str, Any]:
    if type(inputs) is not dict:
        raise _Reject
    if inputs.keys() == _ICH_GWR_FORM:  # the usual form: GWR given, not the two HU values
        stroke = inputs["stroke_history"]
        if type(stroke) is not bool:
            raise _Reject
        return {
            "gwr": _number(inputs["gwr"]),
            "stroke_history": stroke,
            "ffp_volume": _quantity(inputs["ffp_volume"]),
            "min_platelets": _quantity(inputs["min_platelets"]),
        }
    if not inputs.keys() <= _ICH_KEYS:
        raise _Reject
    has_hu = ("grey_matter_hu" in inputs, "white_matter_hu" in inputs)
    if "gwr" in inputs:
        if any(has_hu):
            raise _Reject
    elif not all(has_hu):
        raise _Reject
    stroke = inputs.get("stroke_history")
    if type(stroke) is not bool:
        raise _Reject
    out: dict[str, Any] = {}
    for key in ("gwr", "grey_matter_hu", "white_matter_hu"):
        if key in inputs:
            out[key] = _number(inputs[key])
    out["stroke_history"] = stroke
    out["ffp_volume"] = _quantity(inputs.get("ffp_volume"))
    out["min_platelets"] = _quantity(inputs.get("min_platelets"))
    return out


_INPUTS = {"weaning": _weaning, "ich": _ich}


def _patient(payload: Any, inputs: Any) -> dict[str, Any]:
    if type(payload) is not dict:
        raise _Reject
    if len(payload) == 1:  # the common case, {"inputs": ...}; None below if the key is another
        return {"inputs": inputs(payload.get("inputs"))}
    if not payload.keys() <= _PATIENT_KEYS:
        raise _Reject
    out: dict[str, Any] = {"inputs": inputs(payload.get("inputs"))}
    for key in _REFERENCES:
        if key in payload:
            out[key] = _string(payload[key], 1, 256)
    return out


def fast_load(kind: str, payload: Any, batch: bool) -> dict[str, Any] | None:
    """What PATIENT_SCHEMAS[kind].load (or BATCH_SCHEMAS) returns, or None: use the schema."""
    inputs = _INPUTS.get(kind)
    if inputs is None:
        return None
    try:
        if not batch:
            return _patient(payload, inputs)
        if type(payload) is not dict or payload.keys() != {"patients"}:
            return None
        patients = payload["patients"]
        if type(patients) is not list or not patients:
            return None
        return {"patients": [_patient(p, inputs) for p in patients]}
    except _Reject:
        return None
