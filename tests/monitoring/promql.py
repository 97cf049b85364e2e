"""What the shipped rules and dashboard query, and what the service really exports.

PromQL has no Python parser here, so metric names are found by removing what cannot be one
(strings, label matchers, grouping clauses, ranges, Grafana variables, function calls, keywords);
promtool checks the syntax itself (tests/monitoring/test_rules.py, test_dashboard.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.cds.fhir import cds_request, ich_prefetch
from tests.factories import ICH_INPUTS, WEANING_INPUTS
from tests.server import REPO

RULES = REPO / "helm" / "ecmo-risk" / "files" / "prometheus-rules.yaml"
RULES_TEST = REPO / "tests" / "monitoring" / "prometheus-rules.test.yaml"
DASHBOARD = REPO / "helm" / "ecmo-risk" / "files" / "grafana-dashboard.json"

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_NAME = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub("", text)
    text = _VARIABLE.sub("", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring/group_* clauses."""
    text = _STRING.sub('""', expr)
    names: set[str] = set()
    for block in _MATCHERS.findall(text):
        names |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    for match in _GROUPING.finditer(text):
        inner = match.group(0).split("(", 1)[1].rstrip(")")
        names |= {n.strip() for n in inner.split(",") if n.strip()}
    return names


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def recorded_names() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: .ci/run installs it (Debian package prometheus); "
            "locally: apt-get install prometheus"
        )
    return path


def check_rules_file(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exercise(client: FlaskClient) -> None:
    """Requests that make the service create every series it can export."""
    client.get("/health/ready")
    client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS})
    client.post("/v1/models/weaning/predict/batch", json={"patients": [{"inputs": WEANING_INPUTS}]})
    client.post("/v1/models/ich/predict", json={"inputs": {**ICH_INPUTS, "gwr": 9}})
    client.post("/cds-services/ecmo-ich-risk", json=cds_request(ich_prefetch()))
    feedback = {
        "feedback": [
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}
        ]
    }
    client.post("/cds-services/ecmo-ich-risk/feedback", json=feedback)


def exported(client: FlaskClient) -> tuple[set[str], set[str]]:
    """(sample names, label names) on /metrics after exercise()."""
    exercise(client)
    text = client.get("/metrics").get_data(as_text=True)
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return {s.name for s in samples}, {k for s in samples for k in s.labels}
