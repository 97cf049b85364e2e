"""read_json takes orjson only where it provably parses as the strict standard-library path does."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request

from service.api.body import _strict_loads, read_json
from service.errors import ServiceError

BODIES = [
    b'{"inputs": {"apache_ii": 22}}',
    b'{"a": 1, "a": 2}',
    # A dropped duplicate whose string had a colon, and a kept string with colons.
    b'{"ref": "urn:a:b", "ref": "c", "x": 1}',
    b'{"ref": "urn:a:b", "x": 1}',
    # Escapes decode to characters the colon count could mistake (\u003a is ":").
    b'{"a": "\\u003a", "a": 1}',
    b'{"a": "\\u003a\\u003a"}',
    b'{"a": "\\"", "b": "\\\\"}',
    # Integers orjson would turn into floats, or refuse.
    b'{"apache_ii": 12345678901234567890}',
    b'{"v": -9223372036854775809, "w": 18446744073709551616}',
    b'{"v": -999999999999999999, "w": 999999999999999999}',
    b'{"apache_ii": -1234567890123456789012}',
    b'{"v": 1' + b"0" * 400 + b"}",
    b'{"v": 0.12345678901234567890, "w": 1.2345678901234567e-5}',
    b'{"v": 1e400}',
    b'{"v": NaN}',
    b'{"v": -Infinity}',
    b"[1, 2,]",
    b'\xef\xbb\xbf{"a": 1}',
    b'{"a": "\xc3\xa9"}',
    b'{"a": "\xff"}',
    b"[" * 600 + b"]" * 600,
    b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}",
    b"[" * 30_000 + b"]" * 30_000,
]


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "value", call()
    except ServiceError as exc:
        return "error", [(type(exc).__name__, e.path, e.message, e.rule) for e in exc.errors]


@pytest.mark.parametrize("raw", BODIES, ids=lambda b: b[:40].decode("utf-8", "replace"))
def test_the_fast_parse_answers_as_the_strict_parse(raw: bytes) -> None:
    app = Flask(__name__)
    with app.test_request_context(method="POST", data=raw, content_type="application/json"):
        got = outcome(lambda: read_json(request))
    expected = outcome(lambda: _strict_loads(raw))
    assert got == expected
    if expected[0] == "value":
        assert repr(got[1]) == repr(expected[1])  # same types too: int stays int, not float


def test_duplicate_keys_are_refused_even_where_a_string_holds_colons() -> None:
    kind, errors = outcome(lambda: _strict_loads(b'{"ref": "urn:a:b", "ref": "c", "x": 1}'))
    assert kind == "error" and errors[0][3] == "duplicate_key"


def test_a_plain_body_does_not_need_the_strict_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(raw: bytes) -> Any:
        raise AssertionError("the strict parse ran")

    monkeypatch.setattr("service.api.body._strict_loads", fail)
    app = Flask(__name__)
    raw = b'{"patients": [{"inputs": {"apache_ii": 22, "ref": "urn:x"}}], "n": 1.5}'
    with app.test_request_context(method="POST", data=raw, content_type="application/json"):
        assert read_json(request) == {
            "patients": [{"inputs": {"apache_ii": 22, "ref": "urn:x"}}],
            "n": 1.5,
        }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"inputs": {"apache_ii": 22,}}', "Illegal trailing comma before end of object"),
        (b'{"a": 1 ,\n  }', "Illegal trailing comma before end of object"),
        (b"[1, 2,]", "Illegal trailing comma before end of array"),
        (b'{"a": [1,\t]}', "Illegal trailing comma before end of array"),
    ],
)
def test_a_trailing_comma_is_named_the_same_on_every_python(raw: bytes, message: str) -> None:
    # Python 3.13 names a trailing comma and points at it; 3.11/3.12 report what they expected
    # after it, one character later. The service says it one way, at the comma.
    comma = raw.rindex(b",")
    line = raw.count(b"\n", 0, comma) + 1
    column = comma - (raw.rfind(b"\n", 0, comma) + 1) + 1
    assert outcome(lambda: _strict_loads(raw)) == (
        "error",
        [("MalformedRequest", "", f"{message} at line {line} column {column}", "json_syntax")],
    )


@pytest.mark.parametrize("raw", [b'{"a": 1,, "b": 2}', b"[1,,2]", b'{"a" 1}', b"[1 2]"])
def test_other_syntax_errors_keep_the_parser_s_words(raw: bytes) -> None:
    kind, errors = outcome(lambda: _strict_loads(raw))
    assert kind == "error" and "trailing comma" not in errors[0][1]
