"""CDS Hooks 2.0 wire formats (marshmallow): the service request and the feedback request."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from service.api.errors import flatten_errors
from service.api.strict import BoundedList, StrictSchema
from service.api.strict import load as strict_load
from service.errors import MalformedRequest

USER_REFERENCE = r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$"


class PatientViewContext(StrictSchema):
    userId = fields.String(required=True, validate=validate.Regexp(USER_REFERENCE))
    patientId = fields.String(required=True, validate=validate.Length(min=1, max=64))
    encounterId = fields.String(validate=validate.Length(min=1, max=64))


class CdsRequest(Schema):
    """CDS Hooks 2.0 request body. Unknown top-level members (e.g. CDS Hooks 3.0 additions) are
    ignored, as the spec's forward compatibility asks; everything we read is checked."""

    class Meta:
        unknown = EXCLUDE

    hook = fields.String(required=True)
    hookInstance = fields.UUID(required=True)
    fhirServer = fields.Url(require_tld=False, schemes={"http", "https"})
    fhirAuthorization = fields.Dict()
    context = fields.Nested(PatientViewContext, required=True)
    prefetch = fields.Dict(
        keys=fields.String(), values=fields.Raw(allow_none=True), allow_none=True
    )

    @validates_schema
    def _authorization_needs_server(self, data: dict[str, Any], **_: Any) -> None:
        if "fhirAuthorization" in data and "fhirServer" not in data:
            raise ValidationError("required when fhirAuthorization is present", "fhirServer")


class Coding(StrictSchema):
    system = fields.String()
    code = fields.String(required=True)
    display = fields.String()


class OverrideReason(StrictSchema):
    reason = fields.Nested(Coding)
    userComment = fields.String()


class AcceptedSuggestion(StrictSchema):
    id = fields.String(required=True)


class FeedbackItem(StrictSchema):
    card = fields.String(required=True, validate=validate.Length(min=1, max=128))
    outcome = fields.String(required=True, validate=validate.OneOf(["accepted", "overridden"]))
    acceptedSuggestions = fields.List(fields.Nested(AcceptedSuggestion))
    overrideReason = fields.Nested(OverrideReason)
    outcomeTimestamp = fields.AwareDateTime(required=True)
    extension = fields.Dict(keys=fields.String())
    """CDS Hooks 2.0 "Extensions": reserved on every object; accepted and not read."""

    @validates_schema
    def _outcome_fields(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("outcome") == "accepted":
            if "acceptedSuggestions" not in data:
                raise ValidationError("required when outcome is accepted", "acceptedSuggestions")
            if "overrideReason" in data:
                raise ValidationError("only allowed when outcome is overridden", "overrideReason")
        elif "acceptedSuggestions" in data:
            raise ValidationError("only allowed when outcome is accepted", "acceptedSuggestions")


class FeedbackRequest(Schema):
    class Meta:
        unknown = EXCLUDE

    feedback = BoundedList(
        fields.Nested(FeedbackItem),
        max_items=100,
        required=True,
        validate=validate.Length(min=1, max=100),
    )


CDS_REQUEST = CdsRequest()
FEEDBACK = FeedbackRequest()


def load(schema: Schema, payload: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = strict_load(schema, payload)
    except ValidationError as exc:
        errors, omitted = flatten_errors(exc.messages)
        raise MalformedRequest(
            f"{len(errors) + omitted} field(s) of the CDS Hooks request are not acceptable",
            errors,
            omitted,
        ) from None
    return data
