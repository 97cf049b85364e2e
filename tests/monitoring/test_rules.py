"""The shipped Prometheus rules: valid (promtool check rules), each alert unit-tested (promtool
test rules), and built only from series the service exports or the rules record."""

from __future__ import annotations

import subprocess

import yaml
from flask.testing import FlaskClient

from tests.monitoring.promql import (
    RULES,
    RULES_TEST,
    check_rules_file,
    exported,
    label_names,
    metric_names,
    promtool,
    recorded_names,
    rule_groups,
)


def test_promtool_accepts_the_rules() -> None:
    result = check_rules_file(RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    assert {
        "EcmoHighErrorRatio",
        "EcmoLatencySLOBurnFast",
        "EcmoLatencySLOBurnSlow",
        "EcmoModelNotReady",
        "EcmoNoPredictions",
        "EcmoInputDrift",
        "EcmoProbabilityDrift",
    } <= alerts
    cases = [
        case
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert fired == alerts, f"alerts never shown firing: {alerts - fired}"
    assert silent == alerts, f"alerts never shown silent: {alerts - silent}"


def test_rules_use_only_series_the_service_exports(client: FlaskClient) -> None:
    samples, labels = exported(client)
    recorded = recorded_names()
    for group in rule_groups():
        for rule in group["rules"]:
            expr = rule["expr"]
            unknown = metric_names(expr) - samples - recorded
            assert not unknown, f"{rule.get('record') or rule.get('alert')}: {unknown}"
            # job comes from the scrape; le from histograms; the rest from our labels.
            assert label_names(expr) <= labels | {"job", "le"}, rule
