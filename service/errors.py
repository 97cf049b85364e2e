"""Domain exceptions. No HTTP imports: api/errors.py maps each class to a status in one table.

Hierarchy:
    ServiceError
    ├── MalformedRequest   the body is not JSON (syntax, encoding, duplicate keys, depth) or a
    │                      CDS Hooks request breaks the protocol (400)
    ├── InvalidInput       JSON, but a field has the wrong shape or type, or a value breaks a
    │                      clinical rule (422)
    ├── UnknownModel       no such model or version (404)
    ├── ModelNotReady      the model exists but failed verification or self-test (503)
    ├── InvalidClinicalData  a CDS Hooks prefetch resource is malformed or unusable (400)
    ├── MissingClinicalData  a CDS Hooks call lacks data a model needs; we never query FHIR (412)
    ├── UnknownCdsService    no CDS service with that id (404)
    ├── Unauthorized         the CDS client's JWT is missing or fails verification (401)
    └── ArtifactRejected   raised by the registry while loading; never reaches a client
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_LISTED_ERRORS = 100
"""An error answer lists at most this many FieldErrors and says how many more there were
(`errors_omitted`): a body of unknown keys must not come back several times its size."""


@dataclass(frozen=True)
class FieldError:
    """One failing field: a dotted path into the request, what was wrong, and what is allowed."""

    path: str
    message: str
    rule: str
    allowed: str | None = None

    def prefixed(self, prefix: str) -> FieldError:
        path = f"{prefix}.{self.path}" if self.path else prefix
        return FieldError(path, self.message, self.rule, self.allowed)


class ServiceError(Exception):
    code = "service_error"
    title = "Service error"

    def __init__(self, detail: str, errors: Sequence[FieldError] = (), omitted: int = 0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.omitted = omitted  # errors found (and counted) but not in `errors`


class MalformedRequest(ServiceError):
    code = "malformed_request"
    title = "Malformed request"


class InvalidInput(ServiceError):
    code = "invalid_input"
    title = "Invalid input"


class UnknownModel(ServiceError):
    code = "unknown_model"
    title = "Unknown model"


class ModelNotReady(ServiceError):
    code = "model_not_ready"
    title = "Model not ready"


class ArtifactRejected(ServiceError):
    code = "artifact_rejected"
    title = "Artifact rejected"


class InvalidClinicalData(ServiceError):
    """A prefetched FHIR resource is malformed or carries a value the input rules refuse."""

    code = "invalid_clinical_data"
    title = "Invalid clinical data"


class MissingClinicalData(ServiceError):
    """Data a model needs is absent from the prefetch (and this service does not query FHIR)."""

    code = "missing_clinical_data"
    title = "Required clinical data missing"


class UnknownCdsService(ServiceError):
    code = "unknown_cds_service"
    title = "Unknown CDS service"


class Unauthorized(ServiceError):
    """The caller's bearer token is missing or failed verification; detail says why."""

    code = "unauthorized"
    title = "Unauthorized"


class ExplanationNotFound(ServiceError):
    """A "why this risk" token that no configured key opens (tampered, foreign or rotated out)."""

    code = "explanation_not_found"
    title = "Explanation not found"


class ExplanationExpired(ServiceError):
    """A genuine "why this risk" token older than ECMO_EXPLAIN_TTL_SECONDS."""

    code = "explanation_expired"
    title = "Explanation expired"
