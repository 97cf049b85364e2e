"""Issue 19 item 5: the JWT audience is configured, never derived from the request's Host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.app import create_app
from service.config import ConfigError, Settings, load_settings
from tests.cds.test_cds_auth import ISSUER, SERVICE, jwks, post, refused, token


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks()))
    return path


def test_jwt_required_without_a_public_base_url_fails_at_start(
    model_dir: Path, jwks_file: Path
) -> None:
    env = {
        "ECMO_CDS_JWT_REQUIRED": "true",
        "ECMO_CDS_JWKS_FILE": str(jwks_file),
        "ECMO_CDS_ALLOWED_ISSUERS": ISSUER,
    }
    with pytest.raises(ConfigError, match="ECMO_PUBLIC_BASE_URL"):
        load_settings(env)
    assert load_settings({**env, "ECMO_PUBLIC_BASE_URL": "https://cds.example"}).cds_jwt_required
    # Settings built in code (not from the environment) are refused by the app factory too.
    with pytest.raises(ConfigError, match="ECMO_PUBLIC_BASE_URL"):
        create_app(
            Settings(
                model_dir=model_dir,
                cds_jwt_required=True,
                cds_jwks_file=jwks_file,
                cds_allowed_issuers=(ISSUER,),
            )
        )


@pytest.mark.parametrize("base", ["https://cds.hospital.example", "not a url", "ftp://x.example"])
def test_the_public_base_url_must_be_an_absolute_http_url(base: str) -> None:
    if base.startswith("https://"):
        assert load_settings({"ECMO_PUBLIC_BASE_URL": base}).public_base_url == base
    else:
        with pytest.raises(ConfigError, match="ECMO_PUBLIC_BASE_URL"):
            load_settings({"ECMO_PUBLIC_BASE_URL": base})


def test_a_token_minted_for_another_host_is_refused_whatever_the_host_header(
    model_dir: Path, jwks_file: Path
) -> None:
    client = create_app(
        Settings(
            model_dir=model_dir,
            public_base_url="https://cds.hospital.example",
            cds_jwt_required=True,
            cds_jwks_file=jwks_file,
            cds_allowed_issuers=(ISSUER,),
        )
    ).test_client()
    other = "http://other-tenant.example" + SERVICE
    client.environ_base["HTTP_HOST"] = "other-tenant.example"
    refused(post(client, token(aud=other)), "aud")
    assert post(client, token(aud="https://cds.hospital.example" + SERVICE)).status_code == 200
