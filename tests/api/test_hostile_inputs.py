"""Hostile and sloppy inputs, one table: each row gets its documented status and field-level error.

What an interface engine's mapping may produce: broken JSON, wrong types, nulls, unknown fields,
oversize bodies, and values on either side of every hard bound of CLINICAL.md section 3 in every
accepted unit. Each row names the status and the (path, rule) pairs the error must list (path ""
is the body as a whole); every response is also checked against openapi.yaml.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.contract.no_5xx import _no_server_errors  # noqa: F401  (fail on any 5xx)
from tests.contract.spec import assert_matches_spec
from tests.factories import ICH_INPUTS, WEANING_INPUTS

MAX_BATCH = 50  # tests/conftest.py settings
MAX_BODY = 64 * 1024
KG = {"value": 80, "unit": "kg"}


@dataclass
class Case:
    id: str
    model: str
    body: Any  # a JSON-able value, or bytes sent as they are
    status: int
    errors: set[tuple[str, str]] = field(default_factory=set)
    content_type: str | None = "application/json"
    batch: bool = False


def weaning(**changes: Any) -> dict[str, Any]:
    inputs = {**WEANING_INPUTS, **changes}
    return {"inputs": {k: v for k, v in inputs.items() if v is not None}}


def ich(**changes: Any) -> dict[str, Any]:
    inputs = {**ICH_INPUTS, **changes}
    return {"inputs": {k: v for k, v in inputs.items() if v is not None}}


def q(value: Any, unit: Any, **extra: Any) -> dict[str, Any]:
    return {"value": value, "unit": unit, **extra}


def raw(text: str) -> bytes:
    return text.encode("utf-8")


W_OK = json.dumps(weaning())

SHAPE: list[Case] = [
    # the body as a whole
    Case("empty body", "weaning", b"", 400, {("", "required")}),
    Case("whitespace body", "weaning", b"  \n ", 400, {("", "required")}),
    Case("not JSON", "weaning", raw("apache_ii=22"), 400, {("", "json_syntax")}),
    Case("trailing comma", "weaning", raw(W_OK[:-1] + ",}"), 400, {("", "json_syntax")}),
    Case("comment", "weaning", raw("// hi\n" + W_OK), 400, {("", "json_syntax")}),
    Case("two documents", "weaning", raw(W_OK + W_OK), 400, {("", "json_syntax")}),
    Case("text/plain", "weaning", raw(W_OK), 415, {("", "content_type")}, "text/plain"),
    Case("no content type", "weaning", raw(W_OK), 415, {("", "content_type")}, None),
    Case(
        "form post",
        "weaning",
        raw("a=1"),
        415,
        {("", "content_type")},
        "application/x-www-form-urlencoded",
    ),
    Case("array body", "weaning", [weaning()], 422, {("", "type")}),
    Case("string body", "weaning", "inputs", 422, {("", "type")}),
    Case("null body", "weaning", None, 422, {("", "type")}),
    Case("number body", "ich", 1, 422, {("", "type")}),
    Case("inputs is an array", "weaning", {"inputs": [WEANING_INPUTS]}, 422, {("inputs", "type")}),
    Case(
        "quantity is a number",
        "weaning",
        weaning(lactate_24h=2.8),
        422,
        {("inputs.lactate_24h", "type")},
    ),
    Case("non-UTF-8 bytes", "weaning", b'{"inputs": "\xff\xfe"}', 400, {("", "encoding")}),
    Case("UTF-16 JSON", "weaning", W_OK.encode("utf-16"), 400, {("", "encoding")}),
    # non-finite and oversize numbers
    Case(
        "NaN",
        "weaning",
        raw(W_OK.replace('"vis_0h": 40', '"vis_0h": NaN')),
        400,
        {("", "json_syntax")},
    ),
    Case(
        "Infinity",
        "ich",
        raw(json.dumps(ich()).replace("1.25", "Infinity")),
        400,
        {("", "json_syntax")},
    ),
    Case(
        "-Infinity",
        "weaning",
        raw(W_OK.replace('"vis_24h": 12', '"vis_24h": -Infinity')),
        400,
        {("", "json_syntax")},
    ),
    Case(
        "1e400",
        "weaning",
        raw(W_OK.replace('"vis_0h": 40', '"vis_0h": 1e400')),
        422,
        {("inputs.vis_0h", "finite")},
    ),
    Case(
        "1e400 as a value",
        "ich",
        raw(json.dumps(ich()).replace('"value": 400', '"value": 1e400')),
        422,
        {("inputs.ffp_volume.value", "finite")},
    ),
    Case(
        "10**400 integer",
        "weaning",
        raw(W_OK.replace('"apache_ii": 22', '"apache_ii": 1' + "0" * 400)),
        422,
        {("inputs.apache_ii", "finite")},
    ),
    Case(
        "10**400 as a value",
        "ich",
        raw(json.dumps(ich()).replace('"value": 80', '"value": 1' + "0" * 400)),
        422,
        {("inputs.min_platelets.value", "finite")},
    ),
    Case(
        "5000-digit integer",
        "weaning",
        raw(W_OK.replace('"apache_ii": 22', '"apache_ii": ' + "9" * 5000)),
        400,
        {("", "json_syntax")},
    ),
    # numbers as strings, booleans for numbers, numbers for booleans
    Case(
        "apache_ii as string",
        "weaning",
        weaning(apache_ii="22"),
        422,
        {("inputs.apache_ii", "type")},
    ),
    Case("vis as string", "weaning", weaning(vis_0h="40"), 422, {("inputs.vis_0h", "type")}),
    Case(
        "value as string",
        "weaning",
        weaning(lactate_24h=q("2.8", "mmol/L")),
        422,
        {("inputs.lactate_24h.value", "type")},
    ),
    Case("gwr with comma decimal", "ich", ich(gwr="1,25"), 422, {("inputs.gwr", "type")}),
    Case("apache_ii true", "weaning", weaning(apache_ii=True), 422, {("inputs.apache_ii", "type")}),
    Case("vis false", "weaning", weaning(vis_24h=False), 422, {("inputs.vis_24h", "type")}),
    Case(
        "value true",
        "ich",
        ich(ffp_volume=q(True, "mL")),
        422,
        {("inputs.ffp_volume.value", "type")},
    ),
    Case(
        "stroke_history 1", "ich", ich(stroke_history=1), 422, {("inputs.stroke_history", "type")}
    ),
    Case(
        "stroke_history 0.0",
        "ich",
        ich(stroke_history=0.0),
        422,
        {("inputs.stroke_history", "type")},
    ),
    Case(
        "stroke_history 'true'",
        "ich",
        ich(stroke_history="true"),
        422,
        {("inputs.stroke_history", "type")},
    ),
    Case(
        "apache_ii fraction",
        "weaning",
        weaning(apache_ii=22.5),
        422,
        {("inputs.apache_ii", "type")},
    ),
    Case(
        "unit as number",
        "weaning",
        weaning(lactate_24h=q(2.8, 1)),
        422,
        {("inputs.lactate_24h.unit", "type")},
    ),
    # nulls
    Case(
        "null apache_ii",
        "weaning",
        {"inputs": {**WEANING_INPUTS, "apache_ii": None}},
        422,
        {("inputs.apache_ii", "not_null")},
    ),
    Case(
        "null lactate",
        "weaning",
        {"inputs": {**WEANING_INPUTS, "lactate_24h": None}},
        422,
        {("inputs.lactate_24h", "not_null")},
    ),
    Case(
        "null value",
        "ich",
        ich(min_platelets=q(None, "10*9/L")),
        422,
        {("inputs.min_platelets.value", "not_null")},
    ),
    Case(
        "null stroke_history",
        "ich",
        {"inputs": {**ICH_INPUTS, "stroke_history": None}},
        422,
        {("inputs.stroke_history", "not_null")},
    ),
    Case(
        "null optional body_weight",
        "weaning",
        {"inputs": {**WEANING_INPUTS, "body_weight": None}},
        422,
        {("inputs.body_weight", "not_null")},
    ),
    Case("null inputs", "ich", {"inputs": None}, 422, {("inputs", "not_null")}),
    Case("missing inputs", "ich", {}, 422, {("inputs", "required")}),
    Case(
        "missing apache_ii",
        "weaning",
        weaning(apache_ii=None),
        422,
        {("inputs.apache_ii", "required")},
    ),
    Case(
        "missing unit",
        "ich",
        ich(min_platelets={"value": 80}),
        422,
        {("inputs.min_platelets.unit", "required")},
    ),
    # unknown fields
    Case(
        "unknown top-level field",
        "weaning",
        {**weaning(), "sex": "F"},
        422,
        {("sex", "unknown_field")},
    ),
    Case(
        "unknown input",
        "weaning",
        weaning(lactate_0h=q(3, "mmol/L")),
        422,
        {("inputs.lactate_0h", "unknown_field")},
    ),
    Case(
        "unknown quantity member",
        "ich",
        ich(ffp_volume=q(400, "mL", time="24h")),
        422,
        {("inputs.ffp_volume.time", "unknown_field")},
    ),
    Case(
        "unlisted drug",
        "weaning",
        weaning(vis_0h=None, infusions_0h={"levosimendan": q(0.1, "ug/kg/min")}),
        422,
        {("inputs.infusions_0h.levosimendan", "unknown_field")},
    ),
    Case(
        "salt on dopamine",
        "weaning",
        weaning(vis_0h=None, infusions_0h={"dopamine": q(5, "ug/kg/min", salt="base")}),
        422,
        {("inputs.infusions_0h.dopamine.salt", "unknown_field")},
    ),
    Case(
        "unknown salt",
        "weaning",
        weaning(vis_0h=None, infusions_0h={"norepinephrine": q(0.1, "ug/kg/min", salt="hcl")}),
        422,
        {("inputs.infusions_0h.norepinephrine.salt", "one_of")},
    ),
    Case(
        "duplicate key",
        "ich",
        raw('{"inputs": {"gwr": 1.2, "gwr": 1.4}}'),
        400,
        {("gwr", "duplicate_key")},
    ),
    Case(
        "duplicate top-level key",
        "weaning",
        raw(W_OK[:-1] + ', "inputs": {}}'),
        400,
        {("inputs", "duplicate_key")},
    ),
    # alternatives that must be given exactly once
    Case(
        "vis_0h and infusions_0h",
        "weaning",
        weaning(infusions_0h={"dopamine": q(5, "ug/kg/min")}),
        422,
        {("inputs.infusions_0h", "one_of_required")},
    ),
    Case(
        "neither vis_24h nor infusions_24h",
        "weaning",
        weaning(vis_24h=None),
        422,
        {("inputs.vis_24h", "one_of_required")},
    ),
    Case(
        "gwr and HU",
        "ich",
        ich(grey_matter_hu=35, white_matter_hu=27),
        422,
        {("inputs.gwr", "one_of_required")},
    ),
    Case(
        "one HU only",
        "ich",
        ich(gwr=None, grey_matter_hu=35),
        422,
        {("inputs.gwr", "one_of_required"), ("inputs.white_matter_hu", "one_of_required")},
    ),
    # sizes
    Case(
        "body over the size limit",
        "weaning",
        raw('{"inputs": "' + "x" * MAX_BODY + '"}'),
        413,
        {("", "max_bytes")},
    ),
    Case(
        "batch over the limit",
        "ich",
        {"patients": [ich()] * (MAX_BATCH + 1)},
        413,
        {("patients", "max_items")},
        batch=True,
    ),
    Case("batch at the limit", "ich", {"patients": [ich()] * MAX_BATCH}, 200, batch=True),
    Case("empty batch", "ich", {"patients": []}, 422, {("patients", "length")}, batch=True),
    Case(
        "batch of non-objects", "ich", {"patients": [1]}, 422, {("patients.0", "type")}, batch=True
    ),
    Case(
        "batch is an object",
        "ich",
        {"patients": {"0": ich()}},
        422,
        {("patients", "type")},
        batch=True,
    ),
    Case(
        "batch patient out of bounds",
        "weaning",
        {"patients": [weaning(), weaning(apache_ii=72)]},
        422,
        {("patients.1.inputs.apache_ii", "range")},
        batch=True,
    ),
    Case("deep nesting", "weaning", raw("[" * 30_000 + "]" * 30_000), 400, {("", "depth")}),
    Case(
        "deep nesting in a field",
        "weaning",
        raw(W_OK.replace("22", "[" * 500 + "]" * 500)),
        422,
        {("inputs.apache_ii", "type")},
    ),
    Case(
        "long reference",
        "weaning",
        {**weaning(), "patient_reference": "P" * 257},
        422,
        {("patient_reference", "length")},
    ),
    Case(
        "empty reference",
        "weaning",
        {**weaning(), "correlation_id": ""},
        422,
        {("correlation_id", "length")},
    ),
    Case(
        "long unit",
        "weaning",
        weaning(lactate_24h=q(2.8, "m" * 10_000)),
        422,
        {("inputs.lactate_24h.unit", "length")},
    ),
    Case(
        "long unknown key",
        "ich",
        ich(**{"k" * 10_000: 1}),
        422,
        # the path is cut at 256 characters (service/api/errors.py MAX_PATH)
        {(("inputs." + "k" * 10_000)[:255] + "…", "unknown_field")},
    ),
    Case("reference at 256", "weaning", {**weaning(), "encounter_reference": "E" * 256}, 200),
]

# CLINICAL.md section 3: (model, input builder, path, [(value, unit-or-None, inside?)]).
# Values just inside and just outside each hard bound, in every accepted unit after conversion.
W, I = "weaning", "ich"  # noqa: E741


def bound_rows() -> list[Case]:
    rows: list[Case] = []
    value: float

    def add(
        model: str, label: str, body: dict[str, Any], path: str, inside: bool, batch: bool = False
    ) -> None:
        if inside:
            rows.append(Case(f"{label} inside", model, body, 200, batch=batch))
        else:
            rows.append(Case(f"{label} outside", model, body, 422, {(path, "range")}, batch=batch))

    for value, inside in ((0, True), (71, True), (-1, False), (72, False)):
        add(W, f"apache_ii {value}", weaning(apache_ii=value), "inputs.apache_ii", inside)
    lactate: dict[str, list[tuple[float, bool]]] = {
        "mmol/L": [(0.1, True), (30, True), (0.099, False), (30.01, False)],
        # 0.91 mg/dL (0.101 mmol/L) is inside the hard bounds, but 0.91 mmol/L is the usual
        # reading: refused as implausible for its unit (tests/api/test_clinical_safety.py).
        "mg/dL": [(4.6, True), (270.2, True), (0.9, False), (270.3, False)],
        # 100 umol/L (0.1 mmol/L) reads as 100 mg/dL mistyped: refused as implausible for its unit.
        "umol/L": [(200, True), (30_000, True), (99, False), (30_001, False)],
    }
    for unit, values in lactate.items():
        for value, inside in values:
            add(
                W,
                f"lactate {value} {unit}",
                weaning(lactate_24h=q(value, unit)),
                "inputs.lactate_24h.value",
                inside,
            )
    for key in ("vis_0h", "vis_24h"):
        for value, inside in ((600, True), (600.01, False)):
            add(W, f"{key} {value}", weaning(**{key: value}), f"inputs.{key}", inside)
    add(W, "vis_24h 0", weaning(vis_24h=0), "", True)
    add(W, "vis_24h -0.01", weaning(vis_24h=-0.01), "inputs.vis_24h", False)
    add(W, "vis_0h -0.01", weaning(vis_0h=-0.01), "inputs.vis_0h", False)

    # drug rates at 24 h (0 h keeps VIS 40 via vis_0h), body weight 80 kg for per-patient units
    per_kg: dict[str, float] = {
        "dopamine": 30,
        "dobutamine": 30,
        "epinephrine": 3,
        "norepinephrine": 3,
        "milrinone": 1.5,
    }
    for drug, high in per_kg.items():
        over = round(high * 1.004, 6)
        units = {
            "ug/kg/min": (high, over),
            "mcg/kg/min": (high, over),
            "ug/min": (high * 80, over * 80),
            "mcg/min": (high * 80, over * 80),
            "mg/h": (high * 80 * 60 / 1000, over * 80 * 60 / 1000),
        }
        for unit, (inside_value, outside_value) in units.items():
            for value, inside in ((inside_value, True), (outside_value, False)):
                body = weaning(vis_24h=None, body_weight=KG, infusions_24h={drug: q(value, unit)})
                add(
                    W,
                    f"{drug} {value:g} {unit}",
                    body,
                    f"inputs.infusions_24h.{drug}.value",
                    inside,
                )
        body = weaning(vis_24h=None, infusions_24h={drug: q(-0.01, "ug/kg/min")})
        add(W, f"{drug} negative", body, f"inputs.infusions_24h.{drug}.value", False)
        body = weaning(vis_24h=None, infusions_24h={drug: q(0, "ug/kg/min")})
        add(W, f"{drug} 0 ug/kg/min", body, "", True)
        body = weaning(vis_24h=None, body_weight=KG, infusions_24h={drug: q(-1, "ug/min")})
        add(W, f"{drug} negative per patient", body, f"inputs.infusions_24h.{drug}.value", False)
    # the 0 h rates obey the same bounds (VIS at 24 h given)
    for value, inside in ((30, True), (30.12, False)):
        body = weaning(vis_0h=None, infusions_0h={"dopamine": q(value, "ug/kg/min")})
        add(W, f"dopamine at 0 h {value}", body, "inputs.infusions_0h.dopamine.value", inside)
    monohydrate = 337.29 / 169.18
    for value, inside in ((3 * monohydrate, True), (3.01 * monohydrate, False)):
        salted = q(value, "ug/kg/min", salt="bitartrate_monohydrate")
        body = weaning(vis_24h=None, infusions_24h={"norepinephrine": salted})
        add(
            W,
            f"norepinephrine bitartrate monohydrate {value:g}",
            body,
            "inputs.infusions_24h.norepinephrine.value",
            inside,
        )
    vaso: dict[str, float] = {
        "U/kg/min": 0.002,
        "[U]/kg/min": 0.002,
        "mU/kg/min": 2,
        "m[U]/kg/min": 2,
        "U/min": 0.16,
        "[U]/min": 0.16,
        "U/h": 9.6,
        "[U]/h": 9.6,
        "mU/min": 160,
        "m[U]/min": 160,
    }
    for unit, high in vaso.items():
        for value, inside in ((high, True), (high * 1.01, False)):
            body = weaning(
                vis_24h=None, body_weight=KG, infusions_24h={"vasopressin": q(value, unit)}
            )
            add(
                W,
                f"vasopressin {value:g} {unit}",
                body,
                "inputs.infusions_24h.vasopressin.value",
                inside,
            )
    add(
        W,
        "vasopressin negative",
        weaning(vis_24h=None, infusions_24h={"vasopressin": q(-0.0001, "U/kg/min")}),
        "inputs.infusions_24h.vasopressin.value",
        False,
    )
    weight: dict[str, list[tuple[float, bool]]] = {
        "kg": [(20, True), (300, True), (19.9, False), (300.1, False)],
        "lb": [(44.1, True), (661.3, True), (44.0, False), (661.5, False)],
        "[lb_av]": [(44.1, True), (661.3, True), (44.0, False), (661.5, False)],
    }
    for unit, values in weight.items():
        for value, inside in values:
            add(
                W,
                f"body weight {value} {unit}",
                weaning(body_weight=q(value, unit)),
                "inputs.body_weight.value",
                inside,
            )
    # a computed VIS above 600: dopamine 30 + 100 x epinephrine 3 + 100 x norepinephrine 3 = 630
    too_much = {
        "dopamine": q(30, "ug/kg/min"),
        "epinephrine": q(3, "ug/kg/min"),
        "norepinephrine": q(3, "ug/kg/min"),
    }
    add(
        W,
        "computed VIS 630",
        weaning(vis_24h=None, infusions_24h=too_much),
        "inputs.infusions_24h",
        False,
    )

    for value, inside in ((0.8, True), (1.8, True), (0.79, False), (1.81, False)):
        add(I, f"gwr {value}", ich(gwr=value), "inputs.gwr", inside)
    for key in ("grey_matter_hu", "white_matter_hu"):
        for value, inside in ((5, True), (60, True), (4.9, False), (60.1, False)):
            other = "white_matter_hu" if key == "grey_matter_hu" else "grey_matter_hu"
            body = ich(gwr=None, **{key: value, other: value})
            if inside:
                add(I, f"{key} {value}", body, "", True)
            else:  # both out of range, both reported (the ratio is not: it would only repeat)
                both = {("inputs.grey_matter_hu", "range"), ("inputs.white_matter_hu", "range")}
                rows.append(Case(f"{key} {value} outside", I, body, 422, both))
    add(
        I,
        "HU ratio 2.0",
        ich(gwr=None, grey_matter_hu=60, white_matter_hu=30),
        "inputs.grey_matter_hu",
        False,
    )
    add(
        I,
        "HU ratio 0.79",
        ich(gwr=None, grey_matter_hu=23.7, white_matter_hu=30),
        "inputs.grey_matter_hu",
        False,
    )
    platelets: dict[str, list[tuple[float, bool]]] = {
        # A count below 1 x10^9/L (0 included) is refused as implausible in any unit
        # (tests/api/test_clinical_safety.py).
        "10*9/L": [(1, True), (2000, True), (-0.1, False), (2000.1, False)],
        "10*3/uL": [(1, True), (2000, True), (-0.1, False), (2000.1, False)],
        "/nL": [(1, True), (2000, True), (-0.1, False), (2000.1, False)],
        "K/uL": [(1, True), (2000, True), (-0.1, False), (2000.1, False)],
        "/uL": [(1000, True), (2_000_000, True), (2_000_100, False), (-1, False)],
    }
    for unit, values in platelets.items():
        for value, inside in values:
            add(
                I,
                f"platelets {value} {unit}",
                ich(min_platelets=q(value, unit)),
                "inputs.min_platelets.value",
                inside,
            )
    ffp: dict[str, list[tuple[float, bool]]] = {
        "mL": [(0, True), (20_000, True), (-1, False), (20_000.1, False)],
        "L": [(0, True), (20, True), (20.001, False), (-0.001, False)],
    }
    for unit, values in ffp.items():
        for value, inside in values:
            add(
                I,
                f"ffp {value} {unit}",
                ich(ffp_volume=q(value, unit)),
                "inputs.ffp_volume.value",
                inside,
            )
    return rows


CLINICAL: list[Case] = [
    Case("VIS_0h = 0", W, weaning(vis_0h=0), 422, {("inputs.vis_0h", "nonzero")}),
    Case(
        "no infusions at 0 h",
        W,
        weaning(vis_0h=None, infusions_0h={}),
        422,
        {("inputs.infusions_0h", "nonzero")},
    ),
    Case(
        "zero rates at 0 h",
        W,
        weaning(vis_0h=None, infusions_0h={"dopamine": q(0, "ug/kg/min")}),
        422,
        {("inputs.infusions_0h", "nonzero")},
    ),
    Case("no infusions at 24 h", W, weaning(vis_24h=None, infusions_24h={}), 200),
    Case(
        "per-patient rate without weight",
        W,
        weaning(vis_24h=None, infusions_24h={"dopamine": q(400, "ug/min")}),
        422,
        {("inputs.infusions_24h.dopamine.unit", "requires_body_weight")},
    ),
    Case(
        "0 kg with a per-patient rate",
        W,
        weaning(vis_24h=None, body_weight=q(0, "kg"), infusions_24h={"dopamine": q(400, "ug/min")}),
        422,
        {("inputs.body_weight.value", "range")},
    ),
    Case(
        "FFP in units, not configured",
        I,
        ich(ffp_volume=q(2, "units")),
        422,
        {("inputs.ffp_volume.unit", "unit")},
    ),
    Case(
        "every error at once",
        I,
        ich(gwr=0.5, min_platelets=q(-1, "10*9/L"), ffp_volume=q(1, "gal")),
        422,
        {
            ("inputs.gwr", "range"),
            ("inputs.min_platelets.value", "range"),
            ("inputs.ffp_volume.unit", "unit"),
        },
    ),
]

UNKNOWN_UNITS: list[Case] = [
    Case(f"unknown unit {unit!r} for {path}", model, body, 422, {(path + ".unit", "unit")})
    for unit, model, path, body in [
        ("mEq/L", W, "inputs.lactate_24h", weaning(lactate_24h=q(2.8, "mEq/L"))),
        ("MMOL/L", W, "inputs.lactate_24h", weaning(lactate_24h=q(2.8, "MMOL/L"))),
        # mmol/l is valid UCUM (the liter is l or L) and accepted: tests/api/test_ucum_spellings.py
        ("Mmol/l", W, "inputs.lactate_24h", weaning(lactate_24h=q(2.8, "Mmol/l"))),
        (" mmol/L", W, "inputs.lactate_24h", weaning(lactate_24h=q(2.8, " mmol/L"))),
        ("g", W, "inputs.body_weight", weaning(body_weight=q(80000, "g"))),
        (
            "ug/kg/h",
            W,
            "inputs.infusions_24h.dopamine",
            weaning(vis_24h=None, infusions_24h={"dopamine": q(5, "ug/kg/h")}),
        ),
        (
            "U/kg/h",
            W,
            "inputs.infusions_24h.vasopressin",
            weaning(vis_24h=None, infusions_24h={"vasopressin": q(0.001, "U/kg/h")}),
        ),
        (
            "mU/h",
            W,
            "inputs.infusions_24h.vasopressin",
            weaning(vis_24h=None, infusions_24h={"vasopressin": q(1, "mU/h")}),
        ),
        ("10*9", I, "inputs.min_platelets", ich(min_platelets=q(80, "10*9"))),
        ("dL", I, "inputs.ffp_volume", ich(ffp_volume=q(4, "dL"))),
    ]
]

TABLE = SHAPE + bound_rows() + CLINICAL + UNKNOWN_UNITS


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_hostile_input(client: FlaskClient, case: Case) -> None:
    url = f"/v1/models/{case.model}/predict" + ("/batch" if case.batch else "")
    data = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    response = client.post(url, data=data, headers=headers)
    body = assert_matches_spec(response, url.replace(case.model, "{name}"), "POST")
    assert response.status_code == case.status, body
    if case.status == 200:
        return
    got = {(e["path"], e["rule"]) for e in body["errors"]}
    assert got == case.errors, body["errors"]
    assert all(e["message"] for e in body["errors"])


def test_table_size() -> None:
    assert len(TABLE) >= 200
    assert len({c.id for c in TABLE}) == len(TABLE), "row ids must be unique"


FFP_ML_PER_UNIT = 250.0
BAG_ROWS = [
    (unit, value, inside)
    for unit in ("{unit}", "[iU]", "unit", "units")
    for value, inside in ((0, True), (80, True), (80.01, False), (-1, False))
]


@pytest.mark.parametrize(("unit", "value", "inside"), BAG_ROWS)
def test_ffp_in_bags_obeys_the_ml_bounds_once_a_bag_size_is_configured(
    settings: Settings, unit: str, value: float, inside: bool
) -> None:
    """FFP "units" are accepted only with ECMO_FFP_ML_PER_UNIT; 80 bags of 250 mL = 20,000 mL."""
    app = create_app(dataclasses.replace(settings, ffp_ml_per_unit=FFP_ML_PER_UNIT))
    url = "/v1/models/ich/predict"
    response = app.test_client().post(url, json=ich(ffp_volume=q(value, unit)))
    body = assert_matches_spec(response, "/v1/models/{name}/predict", "POST")
    if inside:
        assert response.status_code == 200, body
        ffp = next(c for c in body["contributions"] if c["feature"] == "ffp_volume_ml")
        ml = value * FFP_ML_PER_UNIT
        if body["extrapolated"]:  # beyond the derivation range: scored at its edge, value named
            assert ffp["value"] < ml
            assert any(f"{ml:g}" in w["message"] for w in body["warnings"])
        else:
            assert ffp["value"] == ml
    else:
        assert response.status_code == 422, body
        assert {(e["path"], e["rule"]) for e in body["errors"]} == {
            ("inputs.ffp_volume.value", "range")
        }


@pytest.mark.parametrize("unit", ["{unit}", "[iU]", "unit", "units"])
def test_ffp_in_bags_is_refused_without_a_configured_bag_size(
    client: FlaskClient, unit: str
) -> None:
    response = client.post("/v1/models/ich/predict", json=ich(ffp_volume=q(2, unit)))
    body = assert_matches_spec(response, "/v1/models/{name}/predict", "POST")
    assert response.status_code == 422
    assert {(e["path"], e["rule"]) for e in body["errors"]} == {("inputs.ffp_volume.unit", "unit")}
