"""Read a request body as JSON, strictly: nothing is coerced or guessed. Every protocol (JSON API,
batch, OIP, CDS Hooks) reads its body here, so these rules hold for all of them at once.

Rejected with 400: an empty body, bytes that are not UTF-8, JSON syntax errors (trailing commas,
comments), the non-standard literals NaN / Infinity, duplicate keys (which value would win is
parser-dependent), nesting deeper than the parser's recursion limit, a broken chunked framing
(malformed chunk size: the server's parser raises while we read). A content type other than JSON
gets 415, and so does a Content-Encoding other than identity (we decode none: a gzip body read as
JSON would be garbage, or worse, sense). A body over the configured size gets 413, whether its
length was declared (werkzeug checks MAX_CONTENT_LENGTH) or it came chunked (we stop reading one
byte past the limit; werkzeug's own stream would silently truncate it there).

Rejected with 422, naming every offending element by its path (at most MAX_VALUE_ERRORS): a string
or object key holding an unpaired UTF-16 surrogate (JSON's `"\\ud800"` escape decodes to a code
point that is not a character and cannot be encoded as UTF-8 again), and a number literal beyond
the range of a double (`1e999`, or a 400-digit integer): no rule can compare it and numpy cannot
hold it. orjson refuses both, so only the standard-library path needs the check.

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
import re
import sys
from typing import Any

import orjson
from flask import Request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from service.api.errors import with_field_error, with_headers
from service.errors import FieldError, InvalidInput, MalformedRequest

JSON_TYPES = ("application/json",)
# Every digit -> "0", anything else -> " ": a run of 19 digits is then a substring search
# (a regular expression over a 100 kB batch took ~1 ms, as long as the parse it guards).
_DIGIT_RUNS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19
# A \\uD800-\\uDFFF escape, the only way a surrogate gets into a parsed string (raw surrogate
# bytes are not UTF-8). Pairs match too; the walk then checks each string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_FLOAT = sys.float_info.max
MAX_VALUE_ERRORS = 100


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
    environ = request.environ
    content_type = environ.get("CONTENT_TYPE")
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
    coding = environ.get("HTTP_CONTENT_ENCODING")
    if coding is not None and any(
        c.strip().lower() != "identity" for c in coding.split(",") if c.strip()
    ):
        # RFC 9110 15.5.16: 415 for a content coding the server does not accept, and RFC 7694:
        # say which codings it does accept.
        raise with_headers(
            with_field_error(
                UnsupportedMediaType(f"the service decodes no Content-Encoding (got {coding})"),
                FieldError(
                    "", f"Content-Encoding {coding} is not decoded", "content_encoding", "identity"
                ),
            ),
            {"Accept-Encoding": "identity"},
        )
    raw = _read_body(request)
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


def _too_large(
    limit: int | None, exc: RequestEntityTooLarge | None = None
) -> RequestEntityTooLarge:
    return with_field_error(
        exc or RequestEntityTooLarge(),
        FieldError(
            "", "the body is larger than the service accepts", "max_bytes", f"at most {limit} bytes"
        ),
    )


def _read_body(request: Request) -> bytes:
    """The body's bytes, at most max_content_length of them, chunked or not."""
    limit = request.max_content_length
    environ = request.environ
    try:
        if (
            limit is not None
            and request.content_length is None
            and environ.get("wsgi.input_terminated")
        ):
            # Chunked: the server ends the stream. werkzeug's stream would stop at the limit
            # and return what it read (a truncated body), so read one byte more ourselves.
            data: bytes = environ["wsgi.input"].read(limit + 1)
            if len(data) > limit:
                raise _too_large(limit)
            return data
        return request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        raise _too_large(limit, exc) from None
    except (ParseException, OSError, ValueError) as exc:
        # The server's HTTP parser failed inside the body (a chunk size that is not hex, a
        # chunk without its CRLF): what the client sent is not HTTP/1.1 framing.
        raise MalformedRequest(
            "the request body's transfer framing is broken",
            [FieldError("", f"cannot read the body: {type(exc).__name__}", "transfer_encoding")],
        ) from None


def _strict_loads(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            "the request body is not UTF-8",
            [FieldError("", f"invalid UTF-8 at byte {exc.start}", "encoding")],
        ) from None
    huge: list[bool] = []

    def parse_float(literal: str) -> float:
        number = float(literal)
        if number in (_INF, -_INF):
            huge.append(True)
        return number

    def parse_int(literal: str) -> int:
        number = int(literal)
        if not -_MAX_FLOAT <= number <= _MAX_FLOAT:
            huge.append(True)
        return number

    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=parse_float,
            parse_int=parse_int,
        )
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
    if huge or _SURROGATE_ESCAPE.search(text):
        errors = unacceptable_values(value)
        if errors:
            raise InvalidInput(f"{len(errors)} value(s) in the body are not acceptable", errors)
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


_INF = float("inf")


def _printable(key: str) -> str:
    """A key as a path segment: lone surrogates shown as U+FFFD (they cannot be written back)."""
    return _SURROGATE.sub("\ufffd", key)


def _unicode_error(path: str) -> FieldError:
    return FieldError(
        path,
        "holds an unpaired UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair), "
        "which is not a character",
        "unicode",
        "Unicode text (surrogate escapes only as a high-low pair)",
    )


def unacceptable_values(value: Any) -> list[FieldError]:
    """Strings and keys with an unpaired surrogate, numbers beyond the range of a double: one
    error per element, with its dotted path (at most MAX_VALUE_ERRORS). Iterative, so a body
    nested as deep as the parser allows is walked without recursion."""
    errors: list[FieldError] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack and len(errors) < MAX_VALUE_ERRORS:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, child in reversed(item.items()):
                shown = key
                if not key.isascii():
                    try:
                        key.encode("utf-8")
                    except UnicodeEncodeError:
                        shown = _printable(key)
                        errors.append(_unicode_error(f"{path}.{shown}" if path else shown))
                stack.append((f"{path}.{shown}" if path else shown, child))
        elif isinstance(item, list):
            for i in range(len(item) - 1, -1, -1):
                stack.append((f"{path}.{i}" if path else str(i), item[i]))
        elif isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    errors.append(_unicode_error(path))
        elif isinstance(item, float):
            if item in (_INF, -_INF):
                errors.append(_range_error(path))
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -_MAX_FLOAT <= item <= _MAX_FLOAT:
                errors.append(_range_error(path))
    return errors[:MAX_VALUE_ERRORS]


def _range_error(path: str) -> FieldError:
    return FieldError(
        path,
        "the number is beyond the range of a double (about ±1.8e308)",
        "finite",
        "a finite number",
    )


def requested_version(request: Request) -> str | None:
    """The optional ?version= of the model routes. Most calls have no query string, and parsing
    an empty one still builds a MultiDict: skip it then."""
    if not request.query_string:
        return None
    return request.args.get("version")
