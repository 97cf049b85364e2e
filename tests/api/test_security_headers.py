"""Issue 19 item 7: nosniff on every answer, no-store on answers that carry clinical data, and a
Content-Security-Policy on HTML pages (one mechanism in the app for every page a blueprint adds)."""

from __future__ import annotations

import json

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient

from tests.cds import fhir
from tests.factories import ICH_INPUTS, WEANING_INPUTS

CLINICAL_ANSWERS = [
    ("POST", "/v1/models/weaning/predict", {"inputs": WEANING_INPUTS}),
    ("POST", "/v1/models/ich/predict/batch", {"patients": [{"inputs": ICH_INPUTS}]}),
    ("POST", "/v1/models/ich/predict", {"inputs": {**ICH_INPUTS, "gwr": "x"}}),  # 422 echoes input
    (
        "POST",
        "/v2/models/weaning/infer",
        {
            "inputs": [
                {"name": "apache_ii", "shape": [1], "datatype": "FP64", "data": [22]},
                {"name": "vis_0h", "shape": [1], "datatype": "FP64", "data": [40]},
                {"name": "vis_24h", "shape": [1], "datatype": "FP64", "data": [12]},
                {
                    "name": "lactate_24h",
                    "shape": [1],
                    "datatype": "FP64",
                    "data": [2.8],
                    "parameters": {"unit": "mmol/L"},
                },
            ]
        },
    ),
    ("POST", "/cds-services/ecmo-weaning-risk", fhir.cds_request(fhir.weaning_prefetch())),
]


@pytest.mark.parametrize(("method", "path", "body"), CLINICAL_ANSWERS, ids=lambda v: str(v)[:40])
def test_answers_with_clinical_data_are_never_stored_or_sniffed(
    client: FlaskClient, method: str, path: str, body: object
) -> None:
    r = client.open(path, method=method, data=json.dumps(body), content_type="application/json")
    assert r.status_code in (200, 422), r.get_data(as_text=True)
    assert r.headers.get_all("Cache-Control") == ["no-store"]
    assert r.headers.get_all("X-Content-Type-Options") == ["nosniff"]


@pytest.mark.parametrize(
    "path",
    ["/health/live", "/health/ready", "/metrics", "/v1/models", "/v1/models/ich/card", "/nope"],
)
def test_every_answer_carries_nosniff(client: FlaskClient, path: str) -> None:
    assert client.get(path).headers.get_all("X-Content-Type-Options") == ["nosniff"]


def _page(app: Flask, rule: str, response: Response) -> None:
    app.add_url_rule(rule, rule, lambda: response)


def test_html_pages_get_the_default_csp_and_json_answers_do_not(app: Flask) -> None:
    _page(app, "/test-page", Response("<h1>card</h1>", mimetype="text/html"))
    client = app.test_client()
    page = client.get("/test-page")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert "Content-Security-Policy" not in client.get("/v1/models").headers


def test_a_page_that_sets_its_own_csp_keeps_it(app: Flask) -> None:
    own = "default-src 'self'"
    _page(
        app,
        "/own-csp",
        Response("<p>x</p>", mimetype="text/html", headers={"Content-Security-Policy": own}),
    )
    assert app.test_client().get("/own-csp").headers.get_all("Content-Security-Policy") == [own]
