"""openapi.yaml is valid, and describes exactly the routes the app serves."""

from __future__ import annotations

from flask import Flask
from openapi_spec_validator import validate

from tests.contract.spec import flask_rule_to_template, load_spec, operations

AUTOMATIC = {"HEAD", "OPTIONS"}


def test_openapi_yaml_validates() -> None:
    validate(load_spec())


def served_operations(app: Flask) -> set[tuple[str, str]]:
    served: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = set(rule.methods or ())
        automatic = set(AUTOMATIC)
        if not getattr(rule, "provide_automatic_options", True):
            automatic.discard("OPTIONS")  # the view serves OPTIONS itself (e.g. CORS)
        served |= {(flask_rule_to_template(rule.rule), m) for m in methods - automatic}
    return served


def test_served_routes_equal_documented_operations(shipped_app: Flask) -> None:
    served = served_operations(shipped_app)
    documented = set(operations())
    assert served - documented == set(), "served but not in openapi.yaml"
    assert documented - served == set(), "in openapi.yaml but not served"


def test_every_operation_documents_its_errors_and_headers() -> None:
    for (path, method), op in operations().items():
        assert "500" in op["responses"], f"{method} {path} lacks the 500 response"
        for status, response in op["responses"].items():
            from tests.contract.spec import resolve

            headers = resolve(response).get("headers", {})
            assert {"X-Request-ID", "Server-Timing"} <= set(headers), (method, path, status)
