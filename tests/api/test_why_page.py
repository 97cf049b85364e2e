"""The "why this risk" page: linked from each CDS card, rendered from an encrypted, expiring token
(no state, no readable patient data in the URL), problem+json for bad or old links. The page in a
real browser is tests/browser/test_why_chromium.py."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import ConfigError, Settings, load_settings
from service.explain_token import ExplainTokens
from tests.cds.fhir import cds_request, ich_prefetch, weaning_prefetch

KEY = Fernet.generate_key().decode()
OLD_KEY = Fernet.generate_key().decode()
ICH = "/cds-services/ecmo-ich-risk"


def app_with(settings: Settings, *keys: str) -> Flask:
    return create_app(replace(settings, explain_keys=keys))


@pytest.fixture
def why(settings: Settings) -> FlaskClient:
    return app_with(settings, KEY).test_client()


def card_link(
    client: FlaskClient, prefetch: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    r = client.post(ICH, json=cds_request(prefetch or ich_prefetch()))
    assert r.status_code == 200, r.get_json()
    card = r.get_json()["cards"][0]
    (link,) = card["links"]
    assert link["type"] == "absolute"
    return card, link["url"]


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def test_each_card_links_to_its_page(why: FlaskClient) -> None:
    card, url = card_link(why)
    assert len(card["summary"]) < 140
    assert re.fullmatch(r"http://localhost/why/[A-Za-z0-9_\-=]+", url)
    assert "p-1" not in url  # the patient id is not in the URL (nor readable in the token)
    page = why.get(path_of(url))
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    ext = card["extension"]["ecmo-risk-service"]
    assert f"{ext['probability']:.4f}" in html
    assert f"<strong>{ext['risk_band']}</strong>" in html
    for label in ("history of stroke", "grey-white matter ratio", "minimum platelet count"):
        assert label in html
    # inputs with units and the FHIR resources they came from, with times
    assert "80000 /uL" in html and "0.15 L" in html
    assert re.search(r"Observation/obs-\d+", html) and re.search(r"Condition/cond-\d+", html)
    assert "<dt>Intended use</dt><dd>tests only</dd>" in html  # the tiny model's manifest
    assert "<dt>Limits</dt><dd>random data</dd>" in html
    assert html.count('<rect class="bar') == 4 + 2  # average patient, 4 factors, this patient


def test_the_page_works_under_a_strict_csp(why: FlaskClient) -> None:
    _, url = card_link(why)
    page = why.get(path_of(url))
    html = page.get_data(as_text=True)
    assert "<script" not in html and "<style" not in html and " style=" not in html
    assert not re.search(r"<[^>]+\son[a-z]+=", html)  # no inline event handlers
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    css = why.get("/why/assets/why.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_warnings_are_shown(why: FlaskClient) -> None:
    prefetch = weaning_prefetch()
    r = why.post("/cds-services/ecmo-weaning-risk", json=cds_request(prefetch)).get_json()["cards"][
        0
    ]
    html = why.get(path_of(r["links"][0]["url"])).get_data(as_text=True)
    warnings = r["extension"]["ecmo-risk-service"].get("warnings")
    if warnings:
        assert 'class="warnings"' in html
    else:
        assert "None: every input was inside" in html


def test_an_altered_or_foreign_token_is_404(why: FlaskClient, settings: Settings) -> None:
    _, url = card_link(why)
    token = path_of(url).removeprefix("/why/")
    flipped = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    for bad in (flipped, "not-a-token", "x" * 9000):
        r = why.get(f"/why/{bad}")
        assert r.status_code == 404
        assert r.get_json()["code"] == "explanation_not_found"
    other = app_with(settings, Fernet.generate_key().decode()).test_client()
    assert other.get(path_of(url)).status_code == 404


def test_an_expired_token_is_410(why: FlaskClient, settings: Settings) -> None:
    old = ExplainTokens([KEY], 3600, clock=lambda: time.time() - 3601)
    _, url = card_link(why)
    payload = ExplainTokens([KEY], 3600).open(path_of(url).removeprefix("/why/"))
    payload.pop("v")
    r = why.get(f"/why/{old.seal(payload)}")
    assert r.status_code == 410
    assert r.get_json()["code"] == "explanation_expired"
    fresh = ExplainTokens([KEY], 3600, clock=lambda: time.time() - 3500)
    assert why.get(f"/why/{fresh.seal(payload)}").status_code == 200


def test_key_rotation(settings: Settings) -> None:
    before = app_with(settings, OLD_KEY).test_client()
    _, url = card_link(before)
    during = app_with(settings, KEY, OLD_KEY).test_client()  # new key first, old kept
    assert during.get(path_of(url)).status_code == 200
    _, new_url = card_link(during)
    assert ExplainTokens([KEY], 60).open(path_of(new_url).removeprefix("/why/"))  # sealed with new
    after = app_with(settings, KEY).test_client()  # old key removed after the TTL
    assert after.get(path_of(url)).status_code == 404


def test_the_token_holds_no_patient_identifier(why: FlaskClient) -> None:
    _, url = card_link(why)
    payload = ExplainTokens([KEY], 60).open(path_of(url).removeprefix("/why/"))
    assert "p-1" not in json.dumps(payload)


def test_without_keys_cards_have_no_link(client: FlaskClient) -> None:
    card = client.post(ICH, json=cds_request(ich_prefetch())).get_json()["cards"][0]
    assert "links" not in card
    assert client.get("/why/anything").status_code == 404


def test_explain_keys_setting_is_checked_without_echoing_it(model_dir: Path) -> None:
    assert load_settings({"ECMO_EXPLAIN_KEYS": f"{KEY},{OLD_KEY}"}).explain_keys == (KEY, OLD_KEY)
    with pytest.raises(ConfigError) as err:
        load_settings({"ECMO_EXPLAIN_KEYS": f"{KEY},secret-but-not-a-key"})
    assert "item 2" in str(err.value) and "secret-but-not-a-key" not in str(err.value)
    assert KEY not in repr(load_settings({"ECMO_EXPLAIN_KEYS": KEY}))
