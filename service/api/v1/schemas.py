"""marshmallow wire formats for the JSON API. Strict: unknown fields are refused, numbers must be
JSON numbers (not strings or booleans), booleans must be true/false, nothing is null.

Shape errors become FieldErrors with dotted paths (`patients.3.inputs.lactate_24h.unit`); the
clinical rules (units, bounds, VIS_0h = 0) are checked afterwards by core.inputs.resolve.
"""

from __future__ import annotations

import math
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

REFERENCE = validate.Length(min=1, max=256)


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


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class QuantitySchema(_Strict):
    value = StrictNumber(required=True)
    unit = fields.String(required=True, validate=validate.Length(min=1, max=32))


class NorepinephrineSchema(QuantitySchema):
    salt = fields.String(validate=validate.OneOf(["base", "bitartrate"]))


class InfusionsSchema(_Strict):
    dopamine = fields.Nested(QuantitySchema)
    dobutamine = fields.Nested(QuantitySchema)
    epinephrine = fields.Nested(QuantitySchema)
    norepinephrine = fields.Nested(NorepinephrineSchema)
    milrinone = fields.Nested(QuantitySchema)
    vasopressin = fields.Nested(QuantitySchema)


def _exactly_one(data: dict[str, Any], a: str, b: str) -> None:
    if (a in data) == (b in data):
        message = f"give exactly one of {a} or {b}"
        raise ValidationError({a: [message]} if a not in data else {b: [message]})


class WeaningInputsSchema(_Strict):
    apache_ii = StrictInteger(required=True)
    lactate_24h = fields.Nested(QuantitySchema, required=True)
    vis_0h = StrictNumber()
    vis_24h = StrictNumber()
    infusions_0h = fields.Nested(InfusionsSchema)
    infusions_24h = fields.Nested(InfusionsSchema)
    body_weight = fields.Nested(QuantitySchema)

    @validates_schema
    def _one_vis_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        _exactly_one(data, "vis_0h", "infusions_0h")
        _exactly_one(data, "vis_24h", "infusions_24h")


class IchInputsSchema(_Strict):
    gwr = StrictNumber()
    grey_matter_hu = StrictNumber()
    white_matter_hu = StrictNumber()
    stroke_history = StrictBoolean(required=True)
    ffp_volume = fields.Nested(QuantitySchema, required=True)
    min_platelets = fields.Nested(QuantitySchema, required=True)

    @validates_schema
    def _one_gwr_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        hu = [k for k in ("grey_matter_hu", "white_matter_hu") if k in data]
        if "gwr" in data and hu:
            raise ValidationError(
                {"gwr": ["give gwr or grey_matter_hu and white_matter_hu, not both"]}
            )
        if "gwr" not in data and len(hu) != 2:
            missing = [k for k in ("gwr", "grey_matter_hu", "white_matter_hu") if k not in data]
            raise ValidationError(
                {k: ["give gwr, or both grey_matter_hu and white_matter_hu"] for k in missing}
            )


INPUT_SCHEMAS: dict[str, type[Schema]] = {"weaning": WeaningInputsSchema, "ich": IchInputsSchema}


def _patient_schema(inputs: type[Schema]) -> type[Schema]:
    class PatientSchema(_Strict):
        inputs_ = fields.Nested(inputs, required=True, data_key="inputs", attribute="inputs")
        patient_reference = fields.String(validate=REFERENCE)
        encounter_reference = fields.String(validate=REFERENCE)
        correlation_id = fields.String(validate=REFERENCE)

    return PatientSchema


def _batch_schema(patient: type[Schema]) -> type[Schema]:
    class BatchSchema(_Strict):
        patients = fields.List(
            fields.Nested(patient), required=True, validate=validate.Length(min=1)
        )

    return BatchSchema


PATIENT_SCHEMAS: dict[str, Schema] = {k: _patient_schema(v)() for k, v in INPUT_SCHEMAS.items()}
BATCH_SCHEMAS: dict[str, Schema] = {
    k: _batch_schema(_patient_schema(v))() for k, v in INPUT_SCHEMAS.items()
}
