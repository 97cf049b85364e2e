"""Read a request body as JSON, strictly: nothing is coerced or guessed.

Rejected with 400: an empty body, bytes that are not UTF-8, JSON syntax errors (trailing commas,
comments), the non-standard literals NaN / Infinity, duplicate keys (which value would win is
parser-dependent), nesting deeper than the parser's recursion limit. A content type other than JSON gets 415, a body
over the configured size 413 (raised by werkzeug from MAX_CONTENT_LENGTH).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from service.api.errors import with_field_error
from service.errors import FieldError, MalformedRequest

JSON_TYPES = ("application/json",)


def _reject_constant(name: str) -> Any:
    raise MalformedRequest(
        f"{name} is not valid JSON",
        [FieldError("", f"the literal {name} is not JSON; send a finite number", "json_syntax")],
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedRequest(
                    f"duplicate key {key!r} in a JSON object",
                    [
                        FieldError(
                            key, "this key appears more than once in one object", "duplicate_key"
                        )
                    ],
                )
            seen.add(key)
    return obj


def read_json(request: Request) -> Any:
    if request.mimetype not in JSON_TYPES:
        got = request.mimetype or "no Content-Type"
        raise with_field_error(
            UnsupportedMediaType(f"send the body as application/json (got {got})"),
            FieldError("", f"Content-Type {got} is not JSON", "content_type", "application/json"),
        )
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        limit = request.max_content_length
        raise with_field_error(  # noqa: B904 - re-raising the same exception, enriched
            exc,
            FieldError(
                "",
                "the body is larger than the service accepts",
                "max_bytes",
                f"at most {limit} bytes",
            ),
        )
    if not raw.strip():
        raise MalformedRequest(
            "the request body is empty", [FieldError("", "expected a JSON object", "required")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            "the request body is not UTF-8",
            [FieldError("", f"invalid UTF-8 at byte {exc.start}", "encoding")],
        ) from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            "the request body is not valid JSON",
            [FieldError("", f"{exc.msg} at line {exc.lineno} column {exc.colno}", "json_syntax")],
        ) from None
    except RecursionError:
        raise MalformedRequest(
            "the request body is nested too deeply",
            [FieldError("", "JSON nesting deeper than the parser allows", "depth")],
        ) from None
    except ValueError as exc:  # e.g. an integer literal with thousands of digits
        raise MalformedRequest(
            "the request body is not acceptable JSON", [FieldError("", str(exc), "json_syntax")]
        ) from None
    return value


def requested_version(request: Request) -> str | None:
    """The optional ?version= of the model routes. Most calls have no query string, and parsing
    an empty one still builds a MultiDict: skip it then."""
    if not request.query_string:
        return None
    return request.args.get("version")
