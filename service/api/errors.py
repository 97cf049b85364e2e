"""One error shape for every failure: RFC 9457 problem+json plus `code`, `errors` and `request_id`.

    {"type", "title", "status", "detail", "code", "errors": [{"path", "message", "rule", "allowed"?}], "request_id"}

`errors` lists at most MAX_LISTED_ERRORS entries; when there were more, `errors_omitted` says how
many were left out. A path longer than MAX_PATH characters (an unknown key is echoed in its path),
or a message or allowed longer than MAX_TEXT (some quote a value sent), is cut there and ends with
"…". So no body can make its own error answer much larger than a few hundred kB.

Domain exceptions map to a status in ERROR_STATUS; werkzeug's HTTPExceptions (404, 405, 413, 415, ...)
keep their own status; anything else is a 500 whose traceback goes to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException

from service.api.strict import OMITTED
from service.errors import (
    MAX_LISTED_ERRORS,
    ArtifactRejected,
    ExplanationExpired,
    ExplanationNotFound,
    FieldError,
    InvalidClinicalData,
    InvalidInput,
    MalformedRequest,
    MissingClinicalData,
    ModelNotReady,
    ServiceError,
    Unauthorized,
    UnknownCdsService,
    UnknownModel,
)

PROBLEM_JSON = "application/problem+json"
HTTPExceptionT = TypeVar("HTTPExceptionT", bound=HTTPException)
log = logging.getLogger("ecmo.errors")
MAX_PATH = 256
MAX_TEXT = 2048


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


ERROR_STATUS: dict[type[ServiceError], int] = {
    MalformedRequest: 400,
    UnknownModel: 404,
    InvalidInput: 422,
    ModelNotReady: 503,
    ArtifactRejected: 503,
    InvalidClinicalData: 400,
    Unauthorized: 401,
    UnknownCdsService: 404,
    MissingClinicalData: 412,
    ExplanationNotFound: 404,
    ExplanationExpired: 410,
}


def status_for(exc: ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
    omitted: int = 0,
    **extra: Any,
) -> Response:
    omitted += max(len(errors) - MAX_LISTED_ERRORS, 0)
    errors = errors[:MAX_LISTED_ERRORS]
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": [
            {
                k: _clip(v, MAX_PATH if k == "path" else MAX_TEXT)
                for k, v in (
                    ("path", e.path),
                    ("message", e.message),
                    ("rule", e.rule),
                    ("allowed", e.allowed),
                )
                if v is not None
            }
            for e in errors
        ],
        "request_id": g.get("request_id", ""),
    }
    if omitted:
        body["errors_omitted"] = omitted
    body.update(extra)
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON, headers=headers)


def with_field_error(exc: HTTPExceptionT, error: FieldError) -> HTTPExceptionT:
    """A werkzeug HTTPException (413, 415, ...) that carries a field-level error like every other
    rejection; the handler below puts it in `errors`."""
    exc.field_errors = [error]  # type: ignore[attr-defined]
    return exc


def with_headers(exc: HTTPExceptionT, headers: dict[str, str]) -> HTTPExceptionT:
    """A werkzeug HTTPException whose answer carries these headers (e.g. 415's Accept-Encoding)."""
    exc.extra_headers = headers  # type: ignore[attr-defined]
    return exc


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        return problem(
            status_for(exc), exc.code, exc.title, exc.detail, exc.errors, omitted=exc.omitted
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = dict(getattr(exc, "extra_headers", {}))
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        errors: list[FieldError] = getattr(exc, "field_errors", [])
        return problem(
            status,
            _snake(type(exc).__name__),
            exc.name,
            exc.description or exc.name,
            errors,
            headers=headers or None,
        )

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": g.get("request_id", "")})
        return problem(
            500, "internal_error", "Internal Server Error", "the service failed; see its logs"
        )


# marshmallow messages -> the rule and allowed members of a FieldError
_RULES = {
    "Missing data for required field.": ("required", "a value for this field"),
    "Unknown field.": ("unknown_field", "only the fields openapi.yaml lists for this object"),
    "Field may not be null.": ("not_null", "a value other than null"),
    "Not a valid number.": ("type", "a JSON number"),
    "Not a valid integer.": ("type", "a JSON integer"),
    "Not a valid boolean.": ("type", "true or false"),
    "Not a valid string.": ("type", "a JSON string"),
    "Not a valid list.": ("type", "a JSON array"),
    "Invalid input type.": ("type", "a JSON object"),
    "Special numeric values (nan or infinity) are not permitted.": ("finite", "a finite number"),
    "Shorter than minimum length 1.": ("length", "at least 1 item"),
}
_ONE_OF = "Must be one of: "


def _rule(message: str) -> tuple[str, str | None]:
    if message in _RULES:
        return _RULES[message]
    if message.startswith("give "):
        return "one_of_required", None
    if message.startswith(_ONE_OF) and message.endswith("."):
        return "one_of", message[len(_ONE_OF) : -1]  # marshmallow's OneOf lists the choices
    if message.startswith("Length must be between") or message.startswith("Longer than"):
        return "length", "1 to 256 characters" if "256" in message else None
    return "invalid", None


def flatten_errors(messages: Any) -> tuple[list[FieldError], int]:
    """marshmallow's nested error dict -> FieldErrors with dotted paths, and the number of errors
    counted but not listed (service.api.strict's OMITTED entries)."""
    out: list[FieldError] = []
    omitted = [0]
    _flatten(messages, "", out, omitted)
    return out, omitted[0]


def _flatten(messages: Any, prefix: str, out: list[FieldError], omitted: list[int]) -> None:
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key is OMITTED:
                omitted[0] += value
                continue
            if key == "_schema":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            _flatten(value, path, out, omitted)
    elif isinstance(messages, list):
        for item in messages:
            if isinstance(item, dict | list):
                _flatten(item, prefix, out, omitted)
            else:
                rule, allowed = _rule(str(item))
                out.append(FieldError(prefix, str(item), rule, allowed))
    else:
        rule, allowed = _rule(str(messages))
        out.append(FieldError(prefix, str(messages), rule, allowed))
