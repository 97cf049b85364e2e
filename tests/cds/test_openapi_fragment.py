"""docs/cds-openapi-fragment.yaml (to be merged into openapi.yaml) merges into a valid OpenAPI
document, documents exactly the CDS routes served, and its examples are what the app answers.
Once merged, tests/contract/ covers the same ground and this file can go."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.app import create_app
from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
URI = "urn:ecmo:cds-openapi"


def merged() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    fragment: dict[str, Any] = yaml.safe_load(
        (ROOT / "docs" / "cds-openapi-fragment.yaml").read_text()
    )
    out = copy.deepcopy(spec)
    out["paths"].update(fragment["paths"])
    for section, items in fragment["components"].items():
        out.setdefault("components", {}).setdefault(section, {}).update(items)
    names = {t["name"] for t in out.get("tags", [])}
    out.setdefault("tags", []).extend(t for t in fragment["tags"] if t["name"] not in names)
    return out


SPEC = merged()
FRAGMENT_PATHS = set(
    yaml.safe_load((ROOT / "docs" / "cds-openapi-fragment.yaml").read_text())["paths"]
)


def resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def absolute(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: URI + v if k == "$ref" else absolute(v) for k, v in node.items()}
    if isinstance(node, list):
        return [absolute(v) for v in node]
    return node


def schema_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    registry: Registry[Any] = Registry().with_resource(
        URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
    )
    validator = Draft202012Validator(absolute(schema), registry=registry)
    return [e.message for e in validator.iter_errors(instance)]


@pytest.fixture(scope="module")
def shipped() -> Flask:
    return create_app(Settings())


def test_the_fragment_merges_into_a_valid_openapi_document() -> None:
    validate(SPEC)


def test_the_cds_routes_served_are_the_fragment_operations(shipped: Flask) -> None:
    served = {
        (rule.rule.replace("<service_id>", "{service_id}"), m)
        for rule in shipped.url_map.iter_rules()
        if rule.rule.startswith("/cds-services")
        for m in (rule.methods or set()) - {"HEAD"}
    }
    documented = {
        (path, m.upper())
        for path in FRAGMENT_PATHS
        for m in SPEC["paths"][path]
        if m != "parameters"
    }
    assert served == documented


def shift_times(body: Any, example_now: datetime) -> Any:
    """Move every effectiveDateTime so it lies as far before now as before example_now."""
    now = datetime.now(UTC)
    if isinstance(body, dict):
        out = {}
        for k, v in body.items():
            if k == "effectiveDateTime":
                t = datetime.fromisoformat(v)
                v = (now - (example_now - t)).isoformat()
            out[k] = shift_times(v, example_now)
        return out
    if isinstance(body, list):
        return [shift_times(v, example_now) for v in body]
    return body


def examples() -> list[tuple[str, str, str, dict[str, Any]]]:
    out = []
    for path in sorted(FRAGMENT_PATHS):
        for method, op in SPEC["paths"][path].items():
            if method == "parameters":
                continue
            for status, response in op["responses"].items():
                for media in (resolve(response).get("content") or {}).values():
                    for name, ex in (media.get("examples") or {}).items():
                        out.append((f"{method.upper()} {path} {status} {name}", path, method, ex))
    return out


EXAMPLES = examples()


@pytest.mark.parametrize(
    ("label", "path", "method", "example"), EXAMPLES, ids=[e[0] for e in EXAMPLES]
)
def test_each_fragment_example_is_what_the_app_answers(
    shipped: Flask, label: str, path: str, method: str, example: dict[str, Any]
) -> None:
    how = example["x-request"]
    op = SPEC["paths"][path][method]
    url = path
    for key, value in (how.get("params") or {}).items():
        url = url.replace("{" + key + "}", value)
    kwargs: dict[str, Any] = {"path": url, "method": method.upper()}
    if "body" in how:
        body = resolve(op["requestBody"])["content"]["application/json"]["examples"][how["body"]]
        value = body["value"]
        if how.get("fresh-times"):
            value = shift_times(value, datetime.fromisoformat(how["example-now"]))
        kwargs.update(data=json.dumps(value), content_type="application/json")
    status = int(label.split()[2])
    response = shipped.test_client().open(**kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    documented = resolve(op["responses"][str(status)])
    media = documented["content"][response.mimetype]
    got = response.get_json()
    assert not schema_errors(got, media["schema"]), schema_errors(got, media["schema"])
    assert not schema_errors(example["value"], media["schema"])
    for name in documented.get("headers") or {}:
        assert name in response.headers, name
    if example.get("x-compare") == "shape":
        expected = example["value"]
        assert (got["status"], got["code"]) == (expected["status"], expected["code"])
        assert [(e["path"], e["rule"]) for e in got["errors"]] == [
            (e["path"], e["rule"]) for e in expected["errors"]
        ]
