"""Every example in openapi.yaml is sent to the app and answered as the spec says.

Each response example carries `x-request` (how to provoke it: path params, a request-body example
by name, or a raw body) and optionally `x-compare` (exact by default: equal except request_id;
`shape`: status, code and each error's path and rule; `schema`: only the schema; `prefix`: text
starts with the example). Every request-body example must be used by some response example.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from tests.contract.conftest import MAX_BODY
from tests.contract.spec import assert_matches_spec, load_spec, operations, resolve, schema_errors


def response_examples() -> list[tuple[str, str, int, str, str, dict[str, Any]]]:
    out = []
    for (path, method), op in operations().items():
        for status, response in op["responses"].items():
            for mimetype, media in (resolve(response).get("content") or {}).items():
                for name, example in (media.get("examples") or {}).items():
                    out.append((path, method, int(status), mimetype, name, resolve(example)))
    return out


EXAMPLES = response_examples()


def request_examples(path: str, method: str) -> dict[str, Any]:
    body = operations()[(path, method)].get("requestBody")
    if body is None:
        return {}
    media = resolve(body)["content"]["application/json"]
    return {k: resolve(v)["value"] for k, v in (media.get("examples") or {}).items()}


def build(path: str, method: str, how: dict[str, Any]) -> dict[str, Any]:
    url = path
    for key, value in (how.get("params") or {}).items():
        url = url.replace("{" + key + "}", value)
    kwargs: dict[str, Any] = {"path": url, "method": method, "query_string": how.get("query")}
    if "headers" in how:
        kwargs["headers"] = how["headers"]
    ctype = how.get("content-type", "application/json")
    if "body" in how and how["body"] in request_examples(path, method):
        body = request_examples(path, method)[how["body"]]
        if how.get("fresh-times"):
            body = shift_times(body, now() - parse_time(how["example-now"]))
        kwargs["data"] = json.dumps(body)
    elif "raw" in how:
        kwargs["data"] = how["raw"].encode("utf-8")
    elif "raw-bytes" in how:
        kwargs["data"] = b'{"inputs": "' + b"x" * how["raw-bytes"] + b'"}'
    elif "raw-batch" in how:
        first = next(iter(request_examples(path, method).values()))["patients"][0]
        kwargs["data"] = json.dumps({"patients": [first] * how["raw-batch"]})
    if "data" in kwargs:
        kwargs["content_type"] = ctype
    if "headers" in how:
        kwargs["headers"] = how["headers"]
    return kwargs


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now() -> datetime:
    return datetime.now(UTC)


def shift_times(node: Any, delta: timedelta) -> Any:
    """Move every effectiveDateTime by delta, so time windows relative to the call still hold."""
    if isinstance(node, dict):
        return {
            k: (
                (parse_time(v) + delta).isoformat().replace("+00:00", "Z")
                if k == "effectiveDateTime" and isinstance(v, str)
                else shift_times(v, delta)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [shift_times(v, delta) for v in node]
    return node


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        return isinstance(actual, int | float) and math.isclose(actual, expected, rel_tol=1e-9)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(actual) == set(expected)
            and all(same(actual[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


def without_request_id(body: Any) -> Any:
    return {k: v for k, v in body.items() if k != "request_id"} if isinstance(body, dict) else body


@pytest.mark.parametrize(
    ("path", "method", "status", "mimetype", "name", "example"),
    EXAMPLES,
    ids=[f"{m} {p} {s} {n}" for p, m, s, _, n, _ in EXAMPLES],
)
def test_response_example_is_what_the_app_answers(
    shipped_app: Flask,
    tampered_app: Flask,
    secured_app: Flask,
    explain_app: Flask,
    path: str,
    method: str,
    status: int,
    mimetype: str,
    name: str,
    example: dict[str, Any],
) -> None:
    how = example.get("x-request")
    assert how is not None, f"example {name} lacks x-request (how to provoke it)"
    schema = resolve(
        resolve(operations()[(path, method)]["responses"][str(status)])["content"][mimetype]
    ).get("schema", {})
    assert not schema_errors(example["value"], schema), schema_errors(example["value"], schema)

    apps = {"tampered": tampered_app, "secured": secured_app, "explain": explain_app}
    app = apps.get(how.get("app", ""), shipped_app)
    with app.test_client() as client:
        if (how.get("params") or {}).get("token") == "$why-token":
            how = {**how, "params": {"token": why_token(client)}}
        response = client.open(**build(path, method, how))
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == mimetype
    body = assert_matches_spec(response, path, method)

    mode = example.get("x-compare", "exact")
    expected = example["value"]
    if mode == "exact":
        assert same(without_request_id(body), without_request_id(expected)), body
    elif mode == "shape":
        assert (body["status"], body["code"]) == (expected["status"], expected["code"])
        assert [(e["path"], e["rule"]) for e in body["errors"]] == [
            (e["path"], e["rule"]) for e in expected["errors"]
        ]
    elif mode == "prefix":
        assert body.startswith(expected)
    else:
        assert mode == "schema", mode


def why_token(client: Any) -> str:
    """A fresh "why this risk" token: the link of the card for the documented weaning example."""
    cds = "/cds-services/{service_id}"
    how = {
        "params": {"service_id": "ecmo-weaning-risk"},
        "body": "patient_view_weaning",
        "fresh-times": True,
        "example-now": "2026-11-23T10:00:00Z",
    }
    card = client.open(**build(cds, "POST", how)).get_json()["cards"][0]
    return str(card["links"][0]["url"]).rsplit("/why/", 1)[1]


def test_every_request_example_is_sent_by_some_response_example() -> None:
    used = {
        (p, m, e["x-request"]["body"])
        for p, m, _, _, _, e in EXAMPLES
        if "body" in e.get("x-request", {})
    }
    for path, method in operations():
        for name in request_examples(path, method):
            assert (path, method, name) in used, (
                f"request example {name} of {method} {path} is never sent"
            )


def has_content(op: dict[str, Any]) -> bool:
    return any(resolve(r).get("content") for s, r in op["responses"].items() if s.startswith("2"))


def test_every_operation_with_a_body_has_examples() -> None:
    with_examples = {(p, m) for p, m, *_ in EXAMPLES}
    assert {k for k, op in operations().items() if has_content(op)} <= with_examples


BODYLESS = sorted(set(operations()) - {(p, m) for p, m, *_ in EXAMPLES})


@pytest.mark.parametrize(("path", "method"), BODYLESS, ids=[f"{m} {p}" for p, m in BODYLESS])
def test_operations_without_bodies_answer_as_documented(
    shipped_app: Flask, path: str, method: str
) -> None:
    params = {"{service_id}": "ecmo-weaning-risk", "{name}": "weaning"}
    url = path
    for key, value in params.items():
        url = url.replace(key, value)
    with shipped_app.test_client() as client:
        response = client.open(url, method=method)
    assert response.status_code < 300
    assert_matches_spec(response, path, method)


def test_the_examples_use_the_limits_the_fixture_sets() -> None:
    text = json.dumps(load_spec())
    assert f"at most {MAX_BODY} bytes" in text


def test_request_examples_that_succeed_match_the_request_schema() -> None:
    for path, method, status, _, _, example in EXAMPLES:
        name = example.get("x-request", {}).get("body")
        if status != 200 or name is None:
            continue
        body = resolve(operations()[(path, method)]["requestBody"])["content"]["application/json"]
        errors = schema_errors(request_examples(path, method)[name], body["schema"])
        assert not errors, (name, errors)
