"""Platelet and FFP windows with real searchsets (issue 15, item 6: date filters, paginated
first pages, the smear estimate)."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from tests.cds import fhir
from tests.cds.fhir import LOINC, bundle, cds_request, observation

ICH = "/cds-services/ecmo-ich-risk"


def call(client: FlaskClient, prefetch: dict[str, Any]) -> Any:
    return client.post(ICH, data=json.dumps(cds_request(prefetch)), content_type="application/json")


def json_api(client: FlaskClient, **inputs: Any) -> float:
    body = {"inputs": {**fhir.ICH_INPUTS, **inputs}}
    return float(client.post("/v1/models/ich/predict", json=body).get_json()["probability"])


def probability(r: Any) -> float:
    assert r.status_code == 200, r.get_json()
    return float(r.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"])


def test_a_smear_estimate_does_not_set_the_minimum_platelet_count(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = bundle(
        observation(LOINC, "777-3", 80, "10*9/L", hours_ago=2),
        observation(LOINC, "49497-1", 20, "10*9/L", hours_ago=1),  # estimated from a smear
    )
    assert probability(call(client, prefetch)) == json_api(client)


def test_a_paginated_first_page_that_covers_the_window_is_used(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = bundle(  # _sort=-date: newest first, the last beyond 7 days
        observation(LOINC, "777-3", 95, "10*3/uL", hours_ago=2),
        observation(LOINC, "26515-7", 80000, "/uL", hours_ago=30),
        observation(LOINC, "777-3", 40, "10*9/L", hours_ago=200),
        next_link=True,
    )
    assert probability(call(client, prefetch)) == json_api(client)


def test_a_paginated_first_page_inside_the_window_still_gives_412(client: FlaskClient) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = bundle(
        observation(LOINC, "777-3", 95, "10*3/uL", hours_ago=2),
        observation(LOINC, "26515-7", 80000, "/uL", hours_ago=30),
        next_link=True,
    )
    assert call(client, prefetch).status_code == 412


def test_a_paginated_page_out_of_date_order_is_not_trusted_to_cover_the_window(
    client: FlaskClient,
) -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = bundle(
        observation(LOINC, "777-3", 40, "10*9/L", hours_ago=200),
        observation(LOINC, "777-3", 95, "10*3/uL", hours_ago=2),
        next_link=True,
    )
    assert call(client, prefetch).status_code == 412
