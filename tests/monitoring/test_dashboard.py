"""The shipped Grafana dashboard: every query is valid PromQL (promtool) and selects only series
and labels the service really exports, and it covers what an operator needs to see."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from flask.testing import FlaskClient

from tests.monitoring.promql import (
    DASHBOARD,
    check_rules_file,
    exported,
    label_names,
    metric_names,
)

# Grafana's variables, replaced by values Prometheus would see.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "6h",
    "$job": ".*",
    "$model": "ich",
    "$feature": "gwr",
}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["definition"])
            assert inner, variable["definition"]
            found.append((f"variable {variable['name']}", inner.group(1)))
    return found


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
                    for i, (_, expr) in enumerate(queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = check_rules_file(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_query_selects_series_and_labels_the_service_exports(client: FlaskClient) -> None:
    samples, labels = exported(client)
    for where, expr in queries():
        names = metric_names(expr)
        assert names, f"{where}: selects no metric"
        assert names <= samples, f"{where}: {names - samples} are not exported"
        assert label_names(expr) <= labels | {"job", "le"}, where


def test_the_dashboard_shows_what_the_issue_lists() -> None:
    doc = dashboard()
    assert doc["uid"] == "ecmo-risk-service" and doc["title"]
    used = {name for _, expr in queries() for name in metric_names(expr)}
    assert {
        "ecmo_http_requests_total",  # request rate, error ratio
        "ecmo_http_request_duration_seconds_bucket",  # latency percentiles per route
        "ecmo_model_ready",  # readiness per model
        "ecmo_predictions_total",  # predictions per model and band
        "ecmo_predicted_probability_bucket",  # probability distribution
        "ecmo_input_feature_bucket",  # input distributions
        "ecmo_input_reference_fraction",  # ... against the derivation cohort
        "ecmo_validation_errors_total",  # validation-error fields
    } <= used
    exprs = " ".join(expr for _, expr in queries())
    assert "histogram_quantile(0.99, sum by (route, le)" in exprs
    for panel in doc["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
