"""A fast path for the request schemas: plain checks that accept only what marshmallow accepts.

marshmallow's generic machinery (field lookup, error stores, nested schema instances, hooks) was
about a fifth of a single prediction's CPU time and most of a batch's. For a body that is fully
valid, `fast_load` returns what the schema's load returns (same keys, same values, same Python
types). For anything else (an unknown key, a wrong type, a null, a missing field, a length outside
its limits, a cross-field rule broken) it returns None and the caller runs the marshmallow
schema, which stays the single source of every error message.

Nothing here restates the contract: the inputs, their types and which are required come from the
kind's declared inputs (the same InputFields api/v1/schemas.py builds the schemas from), the
cross-field rules are the kind's own cross_check, and lengths, salts, drugs and reference names
are read from schemas.py. tests/api/test_fastload.py checks the equivalence on generated bodies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from service.api.v1.schemas import REFERENCE, REFERENCES, SALT, UNIT, InfusionsSchema
from service.core.kinds.base import ModelKind

_PATIENT_KEYS = frozenset(("inputs", *REFERENCES))
_UNIT_MIN, _UNIT_MAX = UNIT.min or 0, UNIT.max or 0
_REFERENCE_MIN, _REFERENCE_MAX = REFERENCE.min or 0, REFERENCE.max or 0
_SALTS = frozenset(SALT.choices)
_INFUSIONS = InfusionsSchema()
_DRUGS = frozenset(_INFUSIONS.fields)
_SALTED = frozenset(
    name
    for name, f in _INFUSIONS.fields.items()
    if "salt" in f.schema.fields  # type: ignore[attr-defined]
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


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _Reject
    return value


def _quantity(value: Any, salted: bool = False) -> dict[str, Any]:
    # _number inlined: a 1,000-patient batch has 2,000 or more quantities.
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
    if type(unit) is not str or not _UNIT_MIN <= len(unit) <= _UNIT_MAX:
        raise _Reject
    if len(value) == 2:  # exactly "value" and "unit": both were found above
        return {"value": number, "unit": unit}
    if len(value) != 3 or not salted or "salt" not in value:
        raise _Reject
    salt = value["salt"]
    if type(salt) is not str or salt not in _SALTS:
        raise _Reject
    return {"value": number, "unit": unit, "salt": salt}


def _infusions(value: Any) -> dict[str, Any]:
    if type(value) is not dict or not value.keys() <= _DRUGS:
        raise _Reject
    return {drug: _quantity(qty, drug in _SALTED) for drug, qty in value.items()}


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "quantity": _quantity,
    "infusions": _infusions,
}


@functools.cache
def _inputs_loader(kind: ModelKind) -> Callable[[Any], dict[str, Any]]:
    """The checks for a kind's inputs object, from its declared inputs."""
    checks = {f.name: _CHECKS[f.type] for f in kind.inputs}
    required = frozenset(f.name for f in kind.inputs if f.required)
    # Whether a set of keys is acceptable: known, the required ones present, and the kind's
    # cross-field rules (which depend only on which inputs are given) satisfied. Callers send
    # few distinct sets, so each is decided once.
    verdicts: dict[frozenset[str], bool] = {}

    def acceptable(keys: frozenset[str]) -> bool:
        verdict = verdicts.get(keys)
        if verdict is None:
            verdict = (
                keys <= checks.keys()
                and required <= keys
                and not kind.cross_check(dict.fromkeys(keys))
            )
            if len(verdicts) < 256:
                verdicts[keys] = verdict
        return verdict

    # The key set last accepted: the patients of a batch usually share one, and comparing a dict's
    # keys with it allocates nothing (frozenset(inputs) and its hash were a tenth of this path).
    # Only acceptable sets are stored, so a race between threads cannot accept a wrong one.
    last: list[frozenset[str] | None] = [None]
    check_of = checks.__getitem__

    def load(inputs: Any) -> dict[str, Any]:
        if type(inputs) is not dict:
            raise _Reject
        if inputs.keys() != last[0]:
            keys = frozenset(inputs)
            if not acceptable(keys):
                raise _Reject
            last[0] = keys
        # A loop, not a comprehension: before Python 3.12 a comprehension is a function call.
        out = {}
        for name, value in inputs.items():
            out[name] = check_of(name)(value)
        return out

    return load


def _string(value: Any) -> str:
    if type(value) is not str or not _REFERENCE_MIN <= len(value) <= _REFERENCE_MAX:
        raise _Reject
    return value


def _patient(payload: Any, inputs: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    if type(payload) is not dict:
        raise _Reject
    if len(payload) == 1:  # the common case, {"inputs": ...}; None below if the key is another
        return {"inputs": inputs(payload.get("inputs"))}
    if not payload.keys() <= _PATIENT_KEYS:
        raise _Reject
    out: dict[str, Any] = {"inputs": inputs(payload.get("inputs"))}
    for key in REFERENCES:
        if key in payload:
            out[key] = _string(payload[key])
    return out


def fast_load(kind: ModelKind, payload: Any, batch: bool) -> dict[str, Any] | None:
    """What patient_schema(kind).load (or batch_schema) returns, or None: use the schema."""
    inputs = _inputs_loader(kind)
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
