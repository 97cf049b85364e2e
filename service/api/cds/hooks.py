"""CDS Hooks 2.0 endpoints (https://cds-hooks.hl7.org/2.0/): discovery, service calls, feedback.

    GET     /cds-services                       discovery: one patient-view service per model
    POST    /cds-services/<service_id>          prefetch -> FHIR mapping -> predict -> cards
    POST    /cds-services/<service_id>/feedback card outcomes, counted (nothing stored)
    OPTIONS on all three                        CORS preflight

Services come from the FHIR mapping files, which create_app loads (core.fhir.load_mappings) and
offers only when their model is in the registry. Failures are never `cards: []`: missing data is
412, a bad resource or request 400, an unknown service 404, a refused token 401, an unready model
503, all in the service's one problem+json shape.

A prefetch key the request leaves out (absent, not null) is fetched from the request's fhirServer
with its fhirAuthorization token when that server is on ECMO_FHIR_SERVER_ALLOWLIST
(service/fhir_fetch.py); when the fetch fails the answer is 412 naming each key and why (CDS Hooks
2.0: 412 when the service cannot obtain the data "either through a prefetch request or directly
calling the FHIR server"). The access token is used only in that Authorization header, never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, request

from service.api.body import read_json
from service.api.cds.schemas import CDS_REQUEST, FEEDBACK, load
from service.api.deps import Deps
from service.api.responses import json_response
from service.api.v1.predict import model_ref, prediction_body
from service.core.cds import assess, cards, source_paths
from service.core.explanation import explanation_payload
from service.core.fhir import ServiceMapping
from service.core.riskassessment import (
    ENCOUNTER_REFERENCE,
    basis_references,
    is_subject_reference,
    risk_assessment,
)
from service.errors import FieldError, MalformedRequest, MissingClinicalData, UnknownCdsService
from service.fhir_fetch import FetchFailed

log = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Expose-Headers": "X-Request-ID",
    "Access-Control-Max-Age": "600",
}
"""No Access-Control-Allow-Credentials: browsers refuse it together with origin *."""


def discovery_entry(m: ServiceMapping) -> dict[str, Any]:
    return {
        "hook": m.hook,
        "title": m.title,
        "description": m.description,
        "id": m.id,
        "prefetch": dict(m.prefetch),
    }


def fetch_failures(
    service: ServiceMapping, failures: dict[str, FetchFailed]
) -> MissingClinicalData:
    """412 naming each prefetch key that could not be fetched, the inputs it feeds, and why."""
    errors = []
    for key, failure in failures.items():
        labels = ", ".join(f.label for f in service.features if f.prefetch == key) or key
        errors.append(
            FieldError(
                f"prefetch.{key}",
                f"{labels}: not prefetched, and the FHIR search {failure.message}",
                f"fhir_{failure.outcome}",
                service.prefetch[key],
            )
        )
    reasons = sorted({f.outcome for f in failures.values()})
    return MissingClinicalData(
        f"required clinical data missing: {len(failures)} prefetch key(s) absent and not fetched "
        f"from the FHIR server ({', '.join(reasons)})",
        errors,
    )


def create_cds_blueprint(
    deps: Deps,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Blueprint:
    settings, registry, metrics = deps.settings, deps.registry, deps.metrics
    services, verifier = deps.cds_services, deps.cds_verifier
    fetcher = deps.fhir_fetcher

    bp = Blueprint("cds_hooks", __name__)

    def base_url() -> str:
        return (settings.public_base_url or request.host_url).rstrip("/")

    @bp.before_request
    def _authenticate() -> None:
        if request.method == "OPTIONS" or verifier is None:
            return
        # The configured base, never the request's Host (from_settings refuses to start without it).
        audience = (settings.public_base_url or "").rstrip("/") + request.path
        verifier.verify(request.headers.get("Authorization"), audience)

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
        data = load(CDS_REQUEST, read_json(request))
        if data["hook"] != service.hook:
            raise MalformedRequest(
                f"service {service.id} answers the {service.hook} hook",
                [FieldError("hook", f"got {data['hook']!r}", "hook", service.hook)],
            )
        model = registry.get(service.model)
        prefetch = data.get("prefetch")
        now = clock()
        if fetcher is not None:
            filled = fetcher.fill(
                service.prefetch,
                prefetch,
                data.get("fhirServer"),
                data.get("fhirAuthorization"),
                data["context"],
                since=service.search_since(now),
            )
            if filled.failures:
                raise fetch_failures(service, filled.failures)
            prefetch = filled.prefetch
        assessment = assess(
            service, model, prefetch, now, deps.scoring, patient=data["context"]["patientId"]
        )
        for notice in assessment.extraction.notices:  # counts only: no identifiers in logs
            log.warning("CDS %s: %s", service.id, notice)
        p = assessment.prediction
        metrics.observe_patient(p)
        card_url = f"{base_url()}/v1/models/{model.name}/card?version={model.version}"
        context = data["context"]
        subject, encounter = f"Patient/{context['patientId']}", context.get("encounterId")
        resource = None
        if is_subject_reference(subject):  # else no valid FHIR subject: no suggestion
            resource = risk_assessment(
                prediction_body(p),
                model_ref(model),
                model.kind.name,
                subject,
                now,
                encounter=(
                    f"Encounter/{encounter}"
                    if encounter and ENCOUNTER_REFERENCE.match(f"Encounter/{encounter}")
                    else None
                ),
                basis=basis_references(prefetch or {}, source_paths(assessment)),
                identifier=str(data["hookInstance"]),
            )
        explain_url = None
        if deps.explain_tokens is not None:
            payload = explanation_payload(assessment, prefetch or {}, now)
            explain_url = f"{base_url()}/why/{deps.explain_tokens.seal(payload)}"
        return json_response(
            {
                "cards": cards(
                    assessment, card_url, risk_assessment=resource, explain_url=explain_url
                )
            }
        )

    @bp.post("/cds-services/<service_id>/feedback", provide_automatic_options=False)
    def feedback(service_id: str) -> Response:
        service = service_for(service_id)
        data = load(FEEDBACK, read_json(request))
        for item in data["feedback"]:
            metrics.observe_feedback(service.id, item["outcome"])
        return Response(status=200)

    return bp
