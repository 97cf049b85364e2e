"""service/api/v1/fastload.py (derived from the kinds' declared inputs) must agree with the marshmallow schemas: whatever it accepts, the schema
accepts with exactly the same result (values and Python types); anything else falls back to the
schema (None). Generated bodies mix valid values with every kind of wrong one."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from bench import bodies
from service.api.v1.fastload import fast_load
from service.api.v1.schemas import batch_schema, patient_schema
from service.core.kinds import MODEL_KINDS

WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def mostly(valid: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nineteen times in twenty a valid value, else a wrong one: whole bodies are often valid."""
    return st.integers(0, 19).flatmap(lambda i: wrong if i == 0 else valid)


def mutated(body: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Sometimes drop a key or add an unknown one."""

    def change(d: dict[str, Any], op: int, pick: int) -> dict[str, Any]:
        d = dict(d)
        if op == 1 and d:
            del d[sorted(d)[pick % len(d)]]
        elif op == 2:
            d["unknown"] = 1
        return d

    return st.tuples(body, st.integers(0, 24), st.integers(0, 10)).map(lambda t: change(*t))


NUMBER = mostly(
    st.one_of(
        st.integers(min_value=-(10**6), max_value=10**6),
        st.floats(min_value=-1e6, max_value=1e6),
        st.sampled_from([22.0, 0, -0.0, 1e-300]),
    ),
    st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 22.5, 10**400]), WRONG),
)
INTEGER = mostly(
    st.one_of(st.integers(min_value=-(10**6), max_value=10**6), st.sampled_from([22.0, -0.0])),
    st.one_of(st.sampled_from([22.5, math.nan, math.inf, 10**400]), WRONG),
)
TEXT = mostly(
    st.one_of(st.sampled_from(["mL", "mmol/L", "10*9/L", "kg"]), st.text(min_size=1, max_size=32)),
    st.one_of(st.sampled_from(["", "x" * 33]), WRONG),
)


def quantity(salt: bool = False) -> st.SearchStrategy[Any]:
    salts: dict[str, Any] = {}
    if salt:
        salts["salt"] = mostly(
            st.sampled_from(["base", "bitartrate_anhydrous", "bitartrate_monohydrate"]),
            st.just("bitartrate") | st.just("Base") | WRONG,
        )
    return mostly(
        mutated(st.fixed_dictionaries({"value": NUMBER, "unit": TEXT}, optional=salts)), WRONG
    )


INFUSIONS = mostly(
    mutated(
        st.fixed_dictionaries(
            {},
            optional={
                "dopamine": quantity(),
                "dobutamine": quantity(),
                "epinephrine": quantity(),
                "norepinephrine": quantity(salt=True),
                "milrinone": quantity(),
                "vasopressin": quantity(),
            },
        )
    ),
    WRONG,
)


def either(a: str, b: str, sa: st.SearchStrategy[Any], sb: st.SearchStrategy[Any]) -> Any:
    """Mostly exactly one of two alternative keys; sometimes both or neither."""
    return st.integers(0, 9).flatmap(
        lambda i: (
            st.fixed_dictionaries({a: sa})
            if i < 4
            else st.fixed_dictionaries({b: sb})
            if i < 8
            else st.fixed_dictionaries({a: sa, b: sb})
            if i == 8
            else st.just({})
        )
    )


def merged(*parts: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


WEANING = mostly(
    mutated(
        merged(
            st.fixed_dictionaries(
                {"apache_ii": INTEGER, "lactate_24h": quantity()},
                optional={"body_weight": quantity()},
            ),
            either("vis_0h", "infusions_0h", NUMBER, INFUSIONS),
            either("vis_24h", "infusions_24h", NUMBER, INFUSIONS),
        )
    ),
    WRONG,
)
HU = st.fixed_dictionaries({"grey_matter_hu": NUMBER, "white_matter_hu": NUMBER})
ICH = mostly(
    mutated(
        merged(
            st.fixed_dictionaries(
                {
                    "stroke_history": mostly(st.booleans(), st.sampled_from([0, 1]) | WRONG),
                    "ffp_volume": quantity(),
                    "min_platelets": quantity(),
                }
            ),
            st.integers(0, 9).flatmap(
                lambda i: (
                    st.fixed_dictionaries({"gwr": NUMBER})
                    if i < 4
                    else HU
                    if i < 8
                    else merged(st.fixed_dictionaries({"gwr": NUMBER}), HU)
                    if i == 8
                    else st.fixed_dictionaries({"grey_matter_hu": NUMBER})
                )
            ),
        )
    ),
    WRONG,
)
REFERENCE = mostly(st.text(min_size=1, max_size=256), st.sampled_from(["", "r" * 257]) | WRONG)


def patient(inputs: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return mostly(
        mutated(
            st.fixed_dictionaries(
                {"inputs": inputs},
                optional={
                    "patient_reference": REFERENCE,
                    "encounter_reference": REFERENCE,
                    "correlation_id": REFERENCE,
                },
            )
        ),
        WRONG,
    )


def typed(value: Any) -> Any:
    """Compare values together with their exact types (22 is not 22.0 here)."""
    if isinstance(value, dict):
        return ("dict", {k: typed(v) for k, v in value.items()})
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


def schema_load(schema: Any, payload: Any) -> Any:
    try:
        return schema.load(payload)
    except ValidationError:
        return None


def check(kind: str, payload: Any, batch: bool) -> None:
    fast = fast_load(MODEL_KINDS[kind], payload, batch)
    if fast is not None:
        schema = (batch_schema if batch else patient_schema)(MODEL_KINDS[kind])
        assert typed(fast) == typed(schema_load(schema, payload))


FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(patient(WEANING))
def test_weaning_patient_fast_path_agrees_with_the_schema(payload):
    check("weaning", payload, batch=False)


@FAST
@given(patient(ICH))
def test_ich_patient_fast_path_agrees_with_the_schema(payload):
    check("ich", payload, batch=False)


@FAST
@given(
    st.sampled_from(["weaning", "ich"]).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "patients": st.lists(
                            patient(WEANING if kind == "weaning" else ICH), max_size=3
                        )
                    },
                    optional={"extra": st.integers()},
                ),
                WRONG,
            ),
        )
    )
)
def test_batch_fast_path_agrees_with_the_schema(case):
    kind, payload = case
    check(kind, payload, batch=True)


def test_valid_bodies_take_the_fast_path_with_the_schemas_result():
    cases: list[tuple[str, Any, bool]] = [
        (kind, body, False) for kind, body in bodies.SINGLE.items()
    ] + [(kind, bodies.batch(kind, 200), True) for kind in ("weaning", "ich")]
    cases.append(
        (
            "weaning",
            {
                "inputs": {
                    "apache_ii": 22.0,
                    "lactate_24h": {"value": 25, "unit": "mg/dL"},
                    "infusions_0h": {
                        "norepinephrine": {
                            "value": 0.2,
                            "unit": "ug/kg/min",
                            "salt": "bitartrate_monohydrate",
                        },
                        "dobutamine": {"value": 5, "unit": "ug/kg/min"},
                    },
                    "infusions_24h": {},
                    "body_weight": {"value": 80, "unit": "kg"},
                },
                "patient_reference": "Patient/1",
                "correlation_id": "x",
            },
            False,
        )
    )
    cases.append(
        (
            "ich",
            {
                "inputs": {
                    "grey_matter_hu": 34,
                    "white_matter_hu": 27.5,
                    "stroke_history": True,
                    "ffp_volume": {"value": 1.5, "unit": "L"},
                    "min_platelets": {"value": 90000, "unit": "/uL"},
                },
                "encounter_reference": "Encounter/9",
            },
            False,
        )
    )
    for kind, payload, batch in cases:
        fast = fast_load(MODEL_KINDS[kind], payload, batch)
        assert fast is not None, payload
        schema = (batch_schema if batch else patient_schema)(MODEL_KINDS[kind])
        assert typed(fast) == typed(schema.load(payload))
