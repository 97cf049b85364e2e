"""Read a request body as JSON, strictly: nothing is coerced or guessed.

Rejected with 400: an empty body, bytes that are not UTF-8, JSON syntax errors (trailing commas,
comments), the non-standard literals NaN / Infinity, duplicate keys (which value would win is
parser-dependent), nesting deeper than the parser's recursion limit. A content type other than JSON gets 415, a body
over the configured size 413 (raised by werkzeug from MAX_CONTENT_LENGTH).

Parsing takes orjson where that provably gives what the strict standard-library parse gives, and
the standard library otherwise (it words every error above). orjson is about three times faster,
which matters for a 1,000-patient batch (~1 ms of ~9), but it keeps the last of duplicate keys,
turns integers outside the 64-bit range into floats, and decodes escapes. So it is used only for a
body without a backslash (no escapes: every string re-encodes to the same bytes) and without a run
of 19 or more digits anywhere (every integer then fits a signed 64-bit int), and its result
is kept only if re-encoding it gives as many colons as the body has: each object member has one
colon outside strings, so a dropped duplicate member would show as a missing colon.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from service.api.errors import with_field_error
from service.errors import FieldError, MalformedRequest

JSON_TYPES = ("application/json",)
# Every digit -> "0", anything else -> " ": a run of 19 digits is then a substring search
# (a regular expression over a 100 kB batch took ~1 ms, as long as the parse it guards).
_DIGIT_RUNS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19


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


def read_json(request: Request, untyped_is_json: bool = False) -> Any:
    """The request's JSON body. untyped_is_json: a body without a Content-Type is read as JSON
    (the Open Inference Protocol's servers do, and its official clients send none)."""
    content_type = request.environ.get("CONTENT_TYPE")
    # The exact header most clients send needs no parsing of its parameters.
    if (
        content_type != "application/json"
        and request.mimetype not in JSON_TYPES
        and not (untyped_is_json and not content_type)
    ):
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
    if b"\\" not in raw and _LONG_RUN not in raw.translate(_DIGIT_RUNS):
        try:
            value = orjson.loads(raw)
            colons = orjson.dumps(value).count(b":")
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            pass  # not JSON, or nested past orjson's limits: the standard library decides
        else:
            if colons == raw.count(b":"):
                return value
    return _strict_loads(raw)


def _strict_loads(raw: bytes) -> Any:
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
            [FieldError("", _syntax_message(exc), "json_syntax")],
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


_CLOSERS = {"}": "object", "]": "array"}


def _syntax_message(exc: json.JSONDecodeError) -> str:
    """The parser's message with its position; a trailing comma is named the same way on every
    Python (3.13's words, at the comma): 3.11/3.12 report what they expected after it instead."""
    msg, pos, doc = exc.msg, exc.pos, exc.doc
    if not msg.startswith("Illegal trailing comma"):
        before = doc[:pos].rstrip()
        closer = doc[pos : pos + 1]
        if closer in _CLOSERS and before.endswith(",") and not before[:-1].rstrip().endswith(","):
            pos = len(before) - 1
            msg = f"Illegal trailing comma before end of {_CLOSERS[closer]}"
    line = doc.count("\n", 0, pos) + 1
    column = pos - doc.rfind("\n", 0, pos)
    return f"{msg} at line {line} column {column}"


def requested_version(request: Request) -> str | None:
    """The optional ?version= of the model routes. Most calls have no query string, and parsing
    an empty one still builds a MultiDict: skip it then."""
    if not request.query_string:
        return None
    return request.args.get("version")
