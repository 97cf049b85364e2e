"""openapi.yaml as a test oracle: `assert_matches_spec(response, path_template, method)` checks a
response (Flask test response or requests.Response) against the documented status, media type,
headers and JSON schema. Any test may import it; an undocumented status, header or response field
(every response object in the spec has additionalProperties: false) fails.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
SPEC_URI = "urn:ecmo:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_FLASK_PARAM = re.compile(r"<(?:[a-z_]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


@cache
def load_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(load_spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def resolve(node: Any) -> Any:
    """Follow local $refs (#/...) until a non-reference node."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local refs are used: {ref}"
        target: Any = load_spec()
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema taken from the spec; its #/ refs resolve against the spec."""
    return Draft202012Validator(_absolute_refs(schema), registry=_registry())


def _absolute_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (SPEC_URI + v if k == "$ref" and v.startswith("#/") else _absolute_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolute_refs(v) for v in node]
    return node


def schema_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator_for(schema).iter_errors(instance)
    ]


def flask_rule_to_template(rule: str) -> str:
    return _FLASK_PARAM.sub(r"{\1}", rule)


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(path template, METHOD) -> operation object."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path, item in load_spec()["paths"].items():
        for method in METHODS:
            if method in item:
                out[(path, method.upper())] = item[method]
    return out


def documented_response(path_template: str, method: str, status: int) -> dict[str, Any]:
    op = operations().get((path_template, method.upper()))
    assert op is not None, f"{method.upper()} {path_template} is not in openapi.yaml"
    responses = op["responses"]
    key = str(status)
    if key not in responses:
        key = f"{str(status)[0]}XX"
    if key not in responses:
        key = "default"
    assert key in responses, (
        f"{method.upper()} {path_template} answered {status}, which openapi.yaml does not "
        f"document (documented: {sorted(responses)})"
    )
    return dict(resolve(responses[key]))


def _parts(response: Any) -> tuple[int, Any, bytes]:
    status = response.status_code
    headers = response.headers
    body = response.get_data() if hasattr(response, "get_data") else response.content
    return status, headers, body


def assert_matches_spec(response: Any, path_template: str, method: str) -> Any:
    """Assert the response is one openapi.yaml documents; return the decoded body (JSON or text).

    path_template is the OpenAPI form (/v1/models/{name}/predict); a Flask rule
    (/v1/models/<name>/predict) is accepted too.
    """
    path_template = flask_rule_to_template(path_template)
    status, headers, body = _parts(response)
    documented = documented_response(path_template, method, status)
    where = f"{method.upper()} {path_template} -> {status}"

    for name, header in (documented.get("headers") or {}).items():
        header = resolve(header)
        value = headers.get(name)
        if header.get("required"):
            assert value is not None, f"{where}: documented header {name} is missing"
        if value is not None and "schema" in header:
            errors = schema_errors(value, header["schema"])
            assert not errors, f"{where}: header {name}={value!r}: {errors}"

    content = documented.get("content") or {}
    if not content:
        assert not body, f"{where}: a body was sent but none is documented"
        return None
    mimetype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    assert mimetype in content, (
        f"{where}: Content-Type {mimetype!r} is not documented (documented: {sorted(content)})"
    )
    media = content[mimetype]
    if mimetype == "application/json" or mimetype.endswith("+json"):
        decoded = json.loads(body)
        errors = schema_errors(decoded, media["schema"])
        assert not errors, f"{where}: the body does not match openapi.yaml:\n" + "\n".join(errors)
        return decoded
    if mimetype == "application/yaml":
        document = yaml.safe_load(body)
        errors = schema_errors(document, media["schema"])
        assert not errors, f"{where}: the body does not match openapi.yaml:\n" + "\n".join(errors)
        return document
    if mimetype.startswith("image/"):
        assert body, f"{where}: an empty image"
        return body
    text = body.decode("utf-8")
    errors = schema_errors(text, media.get("schema", {}))
    assert not errors, f"{where}: {errors}"
    return text
