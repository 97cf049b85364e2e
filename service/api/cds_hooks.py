"""CDS Hooks 2.0 endpoints (https://cds-hooks.hl7.org/2.0/): discovery, service calls, feedback.

    GET     /cds-services                       discovery: one patient-view service per model
    POST    /cds-services/<service_id>          prefetch -> FHIR mapping -> predict -> cards
    POST    /cds-services/<service_id>/feedback card outcomes, counted (nothing stored)
    OPTIONS on all three                        CORS preflight

Services come from the FHIR mapping files (core.fhir.load_mappings); a service is offered only
when its model is in the registry. Failures are never `cards: []`: missing data is 412, a bad
resource or request 400, an unknown service 404, a refused token 401, an unready model 503, all
in the service's one problem+json shape. This service never calls the EHR's FHIR server, even when
the request carries fhirServer and fhirAuthorization (the access token is neither used nor logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, request
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from service.api.body import read_json
from service.api.cds_auth import CdsTokenVerifier
from service.api.deps import Deps
from service.api.responses import json_response
from service.api.schemas import flatten_errors
from service.core.cds import assess, cards
from service.core.fhir import ServiceMapping, load_mappings
from service.errors import FieldError, MalformedRequest, UnknownCdsService

log = logging.getLogger("ecmo.cds")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Expose-Headers": "X-Request-ID",
    "Access-Control-Max-Age": "600",
}
"""No Access-Control-Allow-Credentials: browsers refuse it together with origin *."""

USER_REFERENCE = r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$"


class PatientViewContext(Schema):
    class Meta:
        unknown = RAISE

    userId = fields.String(required=True, validate=validate.Regexp(USER_REFERENCE))  # noqa: N815
    patientId = fields.String(required=True, validate=validate.Length(min=1, max=64))  # noqa: N815
    encounterId = fields.String(validate=validate.Length(min=1, max=64))  # noqa: N815


class CdsRequest(Schema):
    """CDS Hooks 2.0 request body. Unknown top-level members (e.g. CDS Hooks 3.0 additions) are
    ignored, as the spec's forward compatibility asks; everything we read is checked."""

    class Meta:
        unknown = EXCLUDE

    hook = fields.String(required=True)
    hookInstance = fields.UUID(required=True)  # noqa: N815
    fhirServer = fields.Url(require_tld=False, schemes={"http", "https"})  # noqa: N815
    fhirAuthorization = fields.Dict()  # noqa: N815
    context = fields.Nested(PatientViewContext, required=True)
    prefetch = fields.Dict(
        keys=fields.String(), values=fields.Raw(allow_none=True), allow_none=True
    )

    @validates_schema
    def _authorization_needs_server(self, data: dict[str, Any], **_: Any) -> None:
        if "fhirAuthorization" in data and "fhirServer" not in data:
            raise ValidationError("required when fhirAuthorization is present", "fhirServer")


class Coding(Schema):
    class Meta:
        unknown = RAISE

    system = fields.String()
    code = fields.String(required=True)
    display = fields.String()


class OverrideReason(Schema):
    class Meta:
        unknown = RAISE

    reason = fields.Nested(Coding)
    userComment = fields.String()  # noqa: N815


class AcceptedSuggestion(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True)


class FeedbackItem(Schema):
    class Meta:
        unknown = RAISE

    card = fields.String(required=True, validate=validate.Length(min=1, max=128))
    outcome = fields.String(required=True, validate=validate.OneOf(["accepted", "overridden"]))
    acceptedSuggestions = fields.List(fields.Nested(AcceptedSuggestion))  # noqa: N815
    overrideReason = fields.Nested(OverrideReason)  # noqa: N815
    outcomeTimestamp = fields.AwareDateTime(required=True)  # noqa: N815

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

    feedback = fields.List(
        fields.Nested(FeedbackItem), required=True, validate=validate.Length(min=1, max=100)
    )


_CDS_REQUEST = CdsRequest()
_FEEDBACK = FeedbackRequest()


def _load(schema: Schema, payload: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = schema.load(payload)
    except ValidationError as exc:
        errors = flatten_errors(exc.messages)
        raise MalformedRequest(
            f"{len(errors)} field(s) of the CDS Hooks request are not acceptable", errors
        ) from None
    return data


def discovery_entry(m: ServiceMapping) -> dict[str, Any]:
    return {
        "hook": m.hook,
        "title": m.title,
        "description": m.description,
        "id": m.id,
        "prefetch": dict(m.prefetch),
    }


def create_cds_blueprint(
    deps: Deps,
    mappings: dict[str, ServiceMapping] | None = None,
    verifier: CdsTokenVerifier | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Blueprint:
    settings, registry, metrics = deps.settings, deps.registry, deps.metrics
    all_mappings = mappings if mappings is not None else load_mappings(settings.fhir_mapping_dir)
    known_models = {s.name for s in registry.statuses}
    services: dict[str, ServiceMapping] = {}
    for sid, m in all_mappings.items():
        if m.model in known_models:
            services[sid] = m
        else:
            log.warning(
                "CDS service not offered: no model", extra={"service": sid, "model": m.model}
            )
    if verifier is None:
        verifier = CdsTokenVerifier.from_settings(settings)
    if verifier is None:
        log.warning(
            "CDS Hooks JWT verification is OFF: any caller can use /cds-services. "
            "Set ECMO_CDS_JWT_REQUIRED=true with ECMO_CDS_JWKS_FILE or ECMO_CDS_JWKS_URLS and "
            "ECMO_CDS_ALLOWED_ISSUERS in production."
        )

    bp = Blueprint("cds_hooks", __name__)

    def base_url() -> str:
        return (settings.public_base_url or request.host_url).rstrip("/")

    @bp.before_request
    def _authenticate() -> None:
        if request.method == "OPTIONS" or verifier is None:
            return
        audience = (
            settings.public_base_url.rstrip("/") + request.path
            if settings.public_base_url
            else request.url
        )
        claims = verifier.verify(request.headers.get("Authorization"), audience)
        g.cds_issuer = claims["iss"]

    @bp.after_request
    def _cors(response: Response) -> Response:
        response.headers.update(CORS_HEADERS)
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    def service_for(service_id: str) -> ServiceMapping:
        service = services.get(service_id)
        if service is None:
            raise UnknownCdsService(
                f"no CDS service {service_id!r}; services: {sorted(services)}",
                [
                    FieldError(
                        "service_id",
                        "unknown CDS service id",
                        "unknown",
                        ", ".join(sorted(services)),
                    )
                ],
            )
        return service

    @bp.route("/cds-services", methods=["OPTIONS"], provide_automatic_options=False)
    @bp.route("/cds-services/<service_id>", methods=["OPTIONS"], provide_automatic_options=False)
    @bp.route(
        "/cds-services/<service_id>/feedback", methods=["OPTIONS"], provide_automatic_options=False
    )
    def preflight(service_id: str | None = None) -> Response:
        """CORS preflight: answered for any path under /cds-services, without a token."""
        return Response(status=204)

    @bp.get("/cds-services", provide_automatic_options=False)
    def discovery() -> Response:
        return json_response({"services": [discovery_entry(m) for m in services.values()]})

    @bp.post("/cds-services/<service_id>", provide_automatic_options=False)
    def call(service_id: str) -> Response:
        service = service_for(service_id)
        g.model = service.model
        data = _load(_CDS_REQUEST, read_json(request))
        if data["hook"] != service.hook:
            raise MalformedRequest(
                f"service {service.id} answers the {service.hook} hook",
                [FieldError("hook", f"got {data['hook']!r}", "hook", service.hook)],
            )
        model = registry.get(service.model)
        assessment = assess(service, model, data.get("prefetch"), clock(), settings.ffp_ml_per_unit)
        p = assessment.prediction
        metrics.observe_prediction(model.name, model.version, p.band.name, p.probability)
        card_url = f"{base_url()}/v1/models/{model.name}/card?version={model.version}"
        return json_response({"cards": cards(assessment, card_url)})

    @bp.post("/cds-services/<service_id>/feedback", provide_automatic_options=False)
    def feedback(service_id: str) -> Response:
        service = service_for(service_id)
        data = _load(_FEEDBACK, read_json(request))
        for item in data["feedback"]:
            metrics.cds_feedback.labels(service=service.id, outcome=item["outcome"]).inc()
        return Response(status=200)

    return bp
