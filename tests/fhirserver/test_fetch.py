"""Fetch on missing prefetch, against a real FHIR R4 server process (tests/fhirserver/server.cjs)
and, for the failure modes a real server should not have, a tiny misbehaving HTTP server.

Each failure mode must give a clear, fast 412 (CDS Hooks 2.0: the service "is unable to retrieve
the necessary FHIR data ... either through a prefetch request or directly calling the FHIR
server"), never a hanging worker, and a count in ecmo_fhir_fetch_total{outcome}.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.cds import fhir
from tests.cds.fhir import cds_request
from tests.fhirserver.conftest import PAGED_PATIENT, PLATELETS_PAGED
from tests.fhirserver.harness import FORBIDDEN_TOKEN, TOKEN, FhirServer, misbehaving

WEANING = "/cds-services/ecmo-weaning-risk"
ICH = "/cds-services/ecmo-ich-risk"
SHIPPED_MAPPINGS = Path(__file__).resolve().parents[2] / "service" / "cds_mappings"


_APPS: list[Flask] = []


def make_app(model_dir: Path, servers: tuple[str, ...], **overrides: Any) -> Flask:
    settings = Settings(
        model_dir=model_dir,
        fhir_server_allowlist=servers,
        fhir_allow_http=True,
        fhir_timeout_seconds=0.5,
        fhir_deadline_seconds=2.0,
    )
    app = create_app(replace(settings, **overrides))
    _APPS.append(app)
    return app


@pytest.fixture(autouse=True)
def _close_fetchers() -> Iterator[None]:
    """Each app's pooled HTTP client is closed with the test (no unclosed sockets)."""
    yield
    while _APPS:
        fetcher = _APPS.pop().extensions["ecmo"].fhir_fetcher
        if fetcher is not None:
            fetcher.close()


def call(
    client: FlaskClient,
    path: str,
    prefetch: dict[str, Any] | None,
    server: str,
    token: str = TOKEN,
    patient: str = "p-1",
) -> Any:
    body = cds_request(
        prefetch,
        fhirServer=server,
        fhirAuthorization={
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Observation.read patient/Condition.read",
            "subject": "ecmo-risk-service",
        },
    )
    body["context"]["patientId"] = patient
    return client.post(path, json=body)


def fetch_count(client: FlaskClient, outcome: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    m = re.search(rf'^ecmo_fhir_fetch_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def real(fhir_srv: FhirServer, model_dir: Path) -> FlaskClient:
    return make_app(model_dir, (fhir_srv.url,)).test_client()


def test_absent_prefetch_keys_are_fetched_with_the_token(
    real: FlaskClient, fhir_srv: FhirServer
) -> None:
    full = call(real, WEANING, fhir.weaning_prefetch(), fhir_srv.url)
    partial = {"apache": fhir.weaning_prefetch()["apache"]}  # the other 5 keys left out
    fetched = call(real, WEANING, partial, fhir_srv.url)
    assert full.status_code == fetched.status_code == 200, fetched.get_json()
    ext = fetched.get_json()["cards"][0]["extension"]["ecmo-risk-service"]
    assert (
        ext["probability"]
        == full.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"]
    )
    assert fetch_count(real, "ok") == 5


def test_no_prefetch_at_all_fetches_every_key(real: FlaskClient, fhir_srv: FhirServer) -> None:
    for path in (WEANING, ICH):
        r = call(real, path, None, fhir_srv.url)
        assert r.status_code == 200, r.get_json()
    assert fetch_count(real, "ok") == 11  # weaning 6 keys, ich 5
    detail = r.get_json()["cards"][0]["detail"]
    assert "sum of 2 observations" in detail  # the FFP volumes came from the server
    assert "80000 /uL" in detail  # and the platelet counts


def test_null_prefetch_means_known_absent_and_is_not_fetched(model_dir: Path) -> None:
    with misbehaving("500") as srv:
        url = f"http://127.0.0.1:{srv.server_port}/fhir"
        client = make_app(model_dir, (url,)).test_client()
        prefetch = fhir.weaning_prefetch()
        prefetch["lactate"] = None
        r = call(client, WEANING, prefetch, url)
        assert r.status_code == 412
        assert srv.hits == 0
    assert [e["path"] for e in r.get_json()["errors"]] == ["prefetch.lactate"]


def test_next_links_are_followed_and_bounded(
    fhir_srv: FhirServer, model_dir: Path, tmp_path: Path
) -> None:
    for name in ("weaning.json", "ich.json"):
        doc = json.loads((SHIPPED_MAPPINGS / name).read_text())
        doc["prefetch"] = {
            k: re.sub(r"_count=\d+", "_count=2", v) for k, v in doc["prefetch"].items()
        }
        (tmp_path / name).write_text(json.dumps(doc))
    client = make_app(model_dir, (fhir_srv.url,), fhir_mapping_dir=tmp_path).test_client()
    r = call(client, ICH, None, fhir_srv.url, patient=PAGED_PATIENT)
    assert r.status_code == 200, r.get_json()
    detail = r.get_json()["cards"][0]["detail"]
    # four pages of two: the minimum is on the last one
    assert f"| {min(PLATELETS_PAGED)} | 10*9/L |" in detail

    bounded = make_app(
        model_dir, (fhir_srv.url,), fhir_mapping_dir=tmp_path, fhir_max_pages=2
    ).test_client()
    r = call(bounded, ICH, None, fhir_srv.url, patient=PAGED_PATIENT)
    assert r.status_code == 412
    errors = r.get_json()["errors"]
    assert [(e["path"], e["rule"]) for e in errors] == [("prefetch.platelets", "incomplete")]


@pytest.mark.parametrize(
    ("token", "rule"),
    [("not-the-token", "fhir_unauthorized"), (FORBIDDEN_TOKEN, "fhir_forbidden")],
)
def test_the_server_checks_the_token(
    real: FlaskClient, fhir_srv: FhirServer, token: str, rule: str
) -> None:
    r = call(real, WEANING, {"apache": fhir.weaning_prefetch()["apache"]}, fhir_srv.url, token)
    assert r.status_code == 412
    body = r.get_json()
    assert {e["path"] for e in body["errors"]} == {
        "prefetch.lactate",
        "prefetch.vis",
        "prefetch.ecmo",
        "prefetch.vasoactives",
        "prefetch.weight",
    }
    assert {e["rule"] for e in body["errors"]} == {rule}
    assert token not in r.get_data(as_text=True)
    assert fetch_count(real, rule.removeprefix("fhir_")) == 1  # the second key was not tried


def test_a_server_off_the_allow_list_is_never_contacted(model_dir: Path) -> None:
    with misbehaving("500") as allowed, misbehaving("500") as other:
        allowed_url = f"http://127.0.0.1:{allowed.server_port}/fhir"
        client = make_app(model_dir, (allowed_url,)).test_client()
        for server in (
            f"http://127.0.0.1:{other.server_port}/fhir",  # another port
            f"http://127.0.0.1:{allowed.server_port}/other",  # another base path
            f"http://user@127.0.0.1:{allowed.server_port}/fhir",  # credentials in the URL
        ):
            r = call(client, WEANING, None, server)
            assert r.status_code == 412, server
            assert {e["rule"] for e in r.get_json()["errors"]} == {"fhir_not_allowed"}
        assert allowed.hits == other.hits == 0
        assert fetch_count(client, "not_allowed") == 3


def test_http_needs_the_setting(model_dir: Path) -> None:
    with misbehaving("500") as srv:
        url = f"http://127.0.0.1:{srv.server_port}/fhir"
        client = make_app(model_dir, (url,), fhir_allow_http=False).test_client()
        r = call(client, WEANING, None, url)
        assert r.status_code == 412
        assert "http" in r.get_json()["errors"][0]["message"]
        assert srv.hits == 0


@pytest.mark.parametrize(
    ("mode", "rule"),
    [
        ("hang", "fhir_timeout"),  # slow: accepts, never answers
        ("drip", "fhir_deadline"),  # answers a byte at a time, never finishing
        ("500", "fhir_server_error"),
        ("503", "fhir_server_error"),
        ("html", "fhir_not_fhir"),  # a login page
        ("not-json", "fhir_not_fhir"),
        ("not-bundle", "fhir_not_fhir"),
        ("redirect", "fhir_client_error"),  # redirects are not followed
    ],
)
def test_failure_modes_answer_412_fast(model_dir: Path, mode: str, rule: str) -> None:
    with misbehaving(mode) as srv:
        url = f"http://127.0.0.1:{srv.server_port}/fhir"
        client = make_app(model_dir, (url,)).test_client()
        started = time.monotonic()
        r = call(client, ICH, None, url)
        elapsed = time.monotonic() - started
        hits = srv.hits
    body = r.get_json()
    assert r.status_code == 412, body
    assert r.content_type == "application/problem+json"
    assert body["errors"][0]["rule"] == rule
    # A server failure is not asked again for the other keys (redirect is not a server failure).
    assert hits == (5 if mode == "redirect" else 1)
    # The worker is released by the configured deadline (2 s here), not by the server.
    print(f"{mode}: 412 {rule} in {elapsed:.2f} s")
    assert elapsed < 2.0 + 1.0
    assert fetch_count(client, rule.removeprefix("fhir_")) >= 1


def test_a_closed_port_is_unreachable(model_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{port}/fhir"
        client = make_app(model_dir, (url,)).test_client()
        r = call(client, WEANING, None, url)
    assert r.status_code == 412
    assert {e["rule"] for e in r.get_json()["errors"]} == {"fhir_unreachable"}
    assert fetch_count(client, "unreachable") == 1


def test_the_token_is_sent_only_as_bearer_and_never_logged(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with misbehaving("500") as srv:
        url = f"http://127.0.0.1:{srv.server_port}/fhir"
        client = make_app(model_dir, (url,)).test_client()
        r = call(client, WEANING, None, url, token=TOKEN)
        assert srv.authorizations == [f"Bearer {TOKEN}"]
    assert r.status_code == 412
    assert TOKEN not in r.get_data(as_text=True)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in json.dumps(record.__dict__, default=str)
        assert "p-1" not in record.getMessage()  # nor the search URL with the patient id
