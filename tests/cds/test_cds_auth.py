"""JWT verification of the calling EHR (CDS Hooks 2.0 "Trusting CDS Clients"), through the app.

Keys are generated here with cryptography; the JWK Set is written to a file (ECMO_CDS_JWKS_FILE)
or served through an allowlisted jku URL (PyJWKClient's fetch replaced, no network)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service.app import create_app
from service.config import Settings
from tests.cds import fhir

ISSUER = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
SERVICE = "/cds-services/ecmo-weaning-risk"
URL = "http://localhost" + SERVICE

EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_EC_KEY = ec.generate_private_key(ec.SECP384R1())


def jwks() -> dict[str, Any]:
    ec_jwk = json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key()))
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return {
        "keys": [
            {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES384"},
            {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS384"},
        ]
    }


def token(
    aud: str = URL,
    alg: str = "ES384",
    key: Any = None,
    kid: str | None = None,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    if key is None:
        key = EC_KEY if alg == "ES384" else RSA_KEY
    header = {"kid": kid or ("ec-1" if alg == "ES384" else "rsa-1"), "typ": "JWT"}
    header.update(headers or {})
    return jwt.encode(payload, key, algorithm=alg, headers=header)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks()))
    return path


@pytest.fixture
def secured(model_dir: Path, jwks_file: Path) -> Flask:
    return create_app(
        Settings(
            model_dir=model_dir,
            cds_jwt_required=True,
            public_base_url="http://localhost",
            cds_jwks_file=jwks_file,
            cds_allowed_issuers=(ISSUER,),
            cds_clock_skew_seconds=30,
        )
    )


@pytest.fixture
def sclient(secured: Flask) -> FlaskClient:
    return secured.test_client()


def post(client: FlaskClient, jwt_token: str | None, path: str = SERVICE) -> Any:
    headers = {"Authorization": f"Bearer {jwt_token}"} if jwt_token is not None else {}
    return client.post(
        path,
        data=json.dumps(fhir.cds_request(fhir.weaning_prefetch())),
        content_type="application/json",
        headers=headers,
    )


def refused(response: Any, rule: str) -> str:
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    body = response.get_json()
    assert body["code"] == "unauthorized"
    assert body["errors"][0]["rule"] == rule, body
    return str(body["errors"][0]["message"])


def test_a_valid_es384_token_passes(sclient: FlaskClient) -> None:
    r = post(sclient, token())
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["cards"]


def test_a_valid_rs384_token_passes(sclient: FlaskClient) -> None:
    assert post(sclient, token(alg="RS384")).status_code == 200


def keyset_file(tmp_path: Path, keys: list[dict[str, Any]]) -> Path:
    path = tmp_path / "jwks-without-alg.json"
    path.write_text(json.dumps({"keys": keys}))
    return path


def secured_with(model_dir: Path, jwks_path: Path) -> FlaskClient:
    settings = Settings(
        model_dir=model_dir,
        cds_jwt_required=True,
        public_base_url="http://localhost",
        cds_jwks_file=jwks_path,
        cds_allowed_issuers=(ISSUER,),
    )
    return create_app(settings).test_client()


def test_keys_that_do_not_name_their_algorithm_verify_rs384_and_es384(
    model_dir: Path, tmp_path: Path
) -> None:
    """ "alg" is optional in a JWK; PyJWT alone would take such an RSA key for RS256."""
    keys = [{k: v for k, v in key.items() if k != "alg"} for key in jwks()["keys"]]
    client = secured_with(model_dir, keyset_file(tmp_path, keys))
    assert post(client, token(alg="RS384")).status_code == 200
    assert post(client, token(alg="ES384")).status_code == 200
    # An RSA key is still no EC key: an ES384 header naming it is refused.
    refused(post(client, token(alg="ES384", kid="rsa-1")), "invalid_token")


def test_a_key_that_names_another_algorithm_is_not_rebound(model_dir: Path, tmp_path: Path) -> None:
    rsa_jwk = {**jwks()["keys"][1], "alg": "RS256"}
    client = secured_with(model_dir, keyset_file(tmp_path, [rsa_jwk]))
    refused(post(client, token(alg="RS384")), "invalid_token")


def test_discovery_and_feedback_need_a_token_too(sclient: FlaskClient) -> None:
    assert sclient.get("/cds-services").status_code == 401
    ok = sclient.get(
        "/cds-services",
        headers={"Authorization": f"Bearer {token(aud='http://localhost/cds-services')}"},
    )
    assert ok.status_code == 200
    assert post(sclient, None, SERVICE + "/feedback").status_code == 401


def test_a_missing_token_is_refused(sclient: FlaskClient) -> None:
    refused(post(sclient, None), "missing_token")


def test_a_token_for_another_url_is_refused(sclient: FlaskClient) -> None:
    msg = refused(post(sclient, token(aud="http://localhost/cds-services/ecmo-ich-risk")), "aud")
    assert URL in msg


def test_an_expired_token_is_refused(sclient: FlaskClient) -> None:
    now = int(time.time())
    refused(post(sclient, token(iat=now - 900, exp=now - 600)), "exp")


def test_a_token_issued_in_the_future_is_refused(sclient: FlaskClient) -> None:
    now = int(time.time())
    refused(post(sclient, token(iat=now + 600, exp=now + 900)), "iat")


def test_an_unknown_issuer_is_refused(sclient: FlaskClient) -> None:
    msg = refused(post(sclient, token(iss="https://evil.example.org")), "iss")
    assert "evil.example.org" in msg


def test_alg_none_is_refused(sclient: FlaskClient) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": URL, "iat": now, "exp": now + 300, "jti": "n-1"}
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'ec-1'})}.{b64(claims)}."
    assert "'none'" in refused(post(sclient, unsigned), "alg")


def test_hs256_is_refused_even_with_the_public_key_as_secret(sclient: FlaskClient) -> None:
    secret = json.dumps(jwks()["keys"][0]).encode() * 2
    refused(post(sclient, token(alg="HS256", key=secret, kid="ec-1")), "alg")


def test_es256_is_refused(sclient: FlaskClient) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    refused(post(sclient, token(alg="ES256", key=key, kid="ec-1")), "alg")


def test_a_replayed_jti_is_refused(sclient: FlaskClient) -> None:
    once = token()
    assert post(sclient, once).status_code == 200
    refused(post(sclient, once), "replay")


def test_a_token_signed_by_another_key_is_refused(sclient: FlaskClient) -> None:
    refused(post(sclient, token(key=OTHER_EC_KEY)), "invalid_token")


def test_a_missing_jti_is_refused(sclient: FlaskClient) -> None:
    refused(post(sclient, token(jti=None)), "claims")


def test_an_unknown_kid_is_refused(sclient: FlaskClient) -> None:
    refused(post(sclient, token(kid="other")), "kid")


def test_a_jku_outside_the_allowlist_is_refused_and_not_fetched(
    sclient: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(self: jwt.PyJWKClient) -> Any:
        raise AssertionError(f"fetched {self.uri}")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", never)
    evil = {"jku": "https://evil.example.org/jwks"}
    refused(post(sclient, token(key=OTHER_EC_KEY, kid="evil-1", headers=evil)), "jku")


def test_a_configured_key_verifies_a_token_whatever_its_jku_says(
    sclient: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CDS Hooks sandbox always sends a jku; a hospital that configured the key offline
    (ECMO_CDS_JWKS_FILE) must not be refused for it, and nothing is fetched."""

    def never(self: jwt.PyJWKClient) -> Any:
        raise AssertionError(f"fetched {self.uri}")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", never)
    sandbox_jku = {"jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"}
    r = post(sclient, token(headers=sandbox_jku))
    assert r.status_code == 200, r.get_json()
    # ... and the key is still the configured one: a token signed by another key is refused.
    refused(post(sclient, token(key=OTHER_EC_KEY, headers=sandbox_jku)), "invalid_token")


def test_an_allowlisted_jku_is_fetched_and_used(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []

    def fake_fetch(self: jwt.PyJWKClient) -> Any:
        fetched.append(self.uri)
        return jwks()

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", fake_fetch)
    app = create_app(
        Settings(
            model_dir=model_dir,
            cds_jwt_required=True,
            public_base_url="http://localhost",
            cds_jwks_urls=(JKU,),
            cds_allowed_issuers=(ISSUER,),
        )
    )
    client = app.test_client()
    assert post(client, token(headers={"jku": JKU})).status_code == 200
    assert post(client, token(alg="RS384", headers={"jku": JKU})).status_code == 200
    assert fetched == [JKU]  # cached


def test_the_audience_is_the_public_base_url_behind_a_proxy(
    model_dir: Path, jwks_file: Path
) -> None:
    app = create_app(
        Settings(
            model_dir=model_dir,
            public_base_url="https://cds.hospital.example/ecmo/",
            cds_jwt_required=True,
            cds_jwks_file=jwks_file,
            cds_allowed_issuers=(ISSUER,),
        )
    )
    client = app.test_client()
    public = "https://cds.hospital.example/ecmo" + SERVICE
    assert post(client, token(aud=public)).status_code == 200
    refused(post(client, token()), "aud")


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics"])
def test_health_and_metrics_never_need_a_token(sclient: FlaskClient, path: str) -> None:
    assert sclient.get(path).status_code == 200


def test_cors_preflight_needs_no_token(sclient: FlaskClient) -> None:
    r = sclient.options(SERVICE, headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_verification_off_logs_a_warning_at_start_up(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create_app(Settings(model_dir=model_dir))
    assert any("JWT verification is OFF" in r.getMessage() for r in caplog.records)


def test_an_unreachable_jwks_url_is_refused_with_the_reason(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(self: jwt.PyJWKClient) -> Any:
        raise jwt.PyJWKClientConnectionError("connection refused")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", unreachable)
    app = create_app(
        Settings(
            model_dir=model_dir,
            cds_jwt_required=True,
            public_base_url="http://localhost",
            cds_jwks_urls=(JKU,),
            cds_allowed_issuers=(ISSUER,),
        )
    )
    refused(post(app.test_client(), token()), "jwks")


@pytest.mark.parametrize("typ", ["at+jwt", "JOSE", "JWS", None, ["JWT"]])
def test_a_typ_other_than_jwt_is_refused(sclient: FlaskClient, typ: Any) -> None:
    """CDS Hooks 2.0: typ is required, fixed value JWT (a missing typ passed before)."""
    refused(post(sclient, token(headers={"typ": typ})), "typ")


def test_typ_jwt_compares_case_insensitively(sclient: FlaskClient) -> None:
    assert post(sclient, token(headers={"typ": "jwt"})).status_code == 200


def test_an_unusable_jwks_file_stops_start_up(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "jwks.json"
    bad.write_text('{"keys": []}')
    settings = Settings(
        model_dir=model_dir,
        cds_jwt_required=True,
        public_base_url="http://localhost",
        cds_jwks_file=bad,
        cds_allowed_issuers=(ISSUER,),
    )
    with pytest.raises(ValueError, match="ECMO_CDS_JWKS_FILE"):
        create_app(settings)


def test_a_token_living_longer_than_the_maximum_is_refused(sclient: FlaskClient) -> None:
    now = int(time.time())
    message = refused(post(sclient, token(iat=now, exp=now + 3600)), "lifetime")
    assert "3600" in message and "300" in message
    assert post(sclient, token(iat=now, exp=now + 300)).status_code == 200


def test_the_replay_record_is_shared_through_its_directory(tmp_path: Path) -> None:
    """Two verifiers (as two workers) on one directory: a token passes once in all."""
    from service.api.cds.auth import SharedReplayCache

    a, b = SharedReplayCache(tmp_path / "jti"), SharedReplayCache(tmp_path / "jti")
    exp = time.time() + 300
    assert a.first_use(ISSUER, "jti-1", exp)
    assert not b.first_use(ISSUER, "jti-1", exp)
    assert not a.first_use(ISSUER, "jti-1", exp)
    assert b.first_use("https://other-ehr.example.org", "jti-1", exp)  # per issuer


def test_an_expired_replay_record_is_swept(tmp_path: Path) -> None:
    from service.api.cds.auth import SharedReplayCache

    now = [1000.0]
    cache = SharedReplayCache(tmp_path / "jti", clock=lambda: now[0])
    assert cache.first_use(ISSUER, "old", 1100.0)
    now[0] = 1200.0 + SharedReplayCache.SWEEP_SECONDS
    assert cache.first_use(ISSUER, "new", now[0] + 300)
    assert len(list((tmp_path / "jti").iterdir())) == 1
