"""marshmallow wire formats for the JSON API. Strict: unknown fields are refused, numbers must be
JSON numbers (not strings or booleans), booleans must be true/false, nothing is null.

Shape errors become FieldErrors with dotted paths (`patients.3.inputs.lactate_24h.unit`); the
clinical rules (units, bounds, VIS_0h = 0) are checked afterwards by core.inputs.resolve.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.api.strict import StrictSchema
from service.core.kinds.base import InputField, ModelKind
from service.core.kinds.weaning import NOREPINEPHRINE_SALTS

REFERENCE = validate.Length(min=1, max=256)
REFERENCES = ("patient_reference", "encounter_reference", "correlation_id")
"""Optional strings a caller may attach to a patient; echoed in the answer."""
UNIT = validate.Length(min=1, max=32)
SALT = validate.OneOf(list(NOREPINEPHRINE_SALTS))


class StrictNumber(fields.Float):
    """A JSON number. Strings ("3.1"), booleans and non-finite values are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        try:
            number = float(value)
        except OverflowError:
            raise self.make_error("special") from None
        if not math.isfinite(number):
            raise self.make_error("special")
        return number


class StrictInteger(fields.Integer):
    """A JSON integer (22 or 22.0); strings, booleans and fractions are refused."""

    default_error_messages = {"invalid": "Not a valid integer."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise self.make_error("invalid")
        try:
            float(value)  # 10**400 is a JSON integer, but no clinical rule can compare it
        except OverflowError:
            raise self.make_error("invalid") from None
        return int(value)


class StrictBoolean(fields.Boolean):
    """JSON true or false only; 0/1 and "yes" are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


_Strict = StrictSchema


class QuantitySchema(_Strict):
    value = StrictNumber(required=True)
    unit = fields.String(required=True, validate=UNIT)


class NorepinephrineSchema(QuantitySchema):
    salt = fields.String(validate=SALT)


class InfusionsSchema(_Strict):
    dopamine = fields.Nested(QuantitySchema)
    dobutamine = fields.Nested(QuantitySchema)
    epinephrine = fields.Nested(QuantitySchema)
    norepinephrine = fields.Nested(NorepinephrineSchema)
    milrinone = fields.Nested(QuantitySchema)
    vasopressin = fields.Nested(QuantitySchema)


def _field(f: InputField) -> fields.Field[Any]:
    """The marshmallow field of one kind input, by its declared type."""
    if f.type == "integer":
        return StrictInteger(required=f.required)
    if f.type == "number":
        return StrictNumber(required=f.required)
    if f.type == "boolean":
        return StrictBoolean(required=f.required)
    if f.type == "quantity":
        return fields.Nested(QuantitySchema, required=f.required)
    return fields.Nested(InfusionsSchema, required=f.required)


@functools.cache
def input_schema(kind: ModelKind) -> type[Schema]:
    """The inputs object of a kind, built from its declared inputs and cross-field rules."""

    def cross_check(self: Schema, data: dict[str, Any], **kwargs: Any) -> None:
        errors = kind.cross_check(data)
        if errors:
            raise ValidationError(errors)

    attrs: dict[str, Any] = {f.name: _field(f) for f in kind.inputs}
    attrs["_cross_check"] = validates_schema(cross_check)
    return type(f"{kind.name.title()}InputsSchema", (_Strict,), attrs)


@functools.cache
def patient_schema(kind: ModelKind) -> Schema:
    """POST /v1/models/{name}/predict: {"inputs", "patient_reference"?, ...}."""

    attrs: dict[str, Any] = {
        "inputs_": fields.Nested(
            input_schema(kind), required=True, data_key="inputs", attribute="inputs"
        ),
        **{name: fields.String(validate=REFERENCE) for name in REFERENCES},
    }
    schema: Schema = type("PatientSchema", (_Strict,), attrs)()
    return schema


@functools.cache
def batch_schema(kind: ModelKind) -> Schema:
    """POST /v1/models/{name}/predict/batch: {"patients": [patient, ...]}."""

    class BatchSchema(_Strict):
        patients = fields.List(
            fields.Nested(type(patient_schema(kind))),
            required=True,
            validate=validate.Length(min=1),
        )

    return BatchSchema()
