"""Issue 19 item 8: optional API keys for internal callers on /v1 and /v2 (off unless
ECMO_API_KEYS_FILE names a file of keys, e.g. a mounted Kubernetes Secret)."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import ConfigError, Settings, load_settings
from tests.factories import WEANING_INPUTS

KEY = "k" * 20 + "0123456789abcdef0123"
OTHER_KEY = "z" * 40


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys"
    path.write_text(f"# internal callers, one key a line\n{KEY}\n\n{OTHER_KEY}\n")
    return path


@pytest.fixture
def kclient(model_dir: Path, keys_file: Path) -> FlaskClient:
    return create_app(Settings(model_dir=model_dir, api_keys_file=keys_file)).test_client()


PROTECTED = [
    ("GET", "/v1/models"),
    ("POST", "/v1/models/weaning/predict"),
    ("GET", "/v2"),
    ("GET", "/v2/models/weaning"),
    ("POST", "/v2/models/weaning/infer"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_v1_and_v2_refuse_a_caller_without_a_valid_key(
    kclient: FlaskClient, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        r = kclient.open(path, method=method, json={"inputs": WEANING_INPUTS}, headers=headers)
        assert r.status_code == 401, (headers, r.get_data(as_text=True))
        assert r.mimetype == "application/problem+json"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        body = r.get_json()
        assert body["code"] == "unauthorized" and body["errors"][0]["rule"] == "api_key"
        assert KEY not in r.get_data(as_text=True)


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
def test_any_configured_key_is_accepted(kclient: FlaskClient, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    assert kclient.get("/v1/models", headers=headers).status_code == 200
    r = kclient.post("/v1/models/weaning/predict", json={"inputs": WEANING_INPUTS}, headers=headers)
    assert r.status_code == 200


@pytest.mark.parametrize(
    "path", ["/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/metrics"]
)
def test_probes_and_metrics_need_no_key(kclient: FlaskClient, path: str) -> None:
    assert kclient.get(path).status_code == 200


def test_cds_hooks_keep_their_own_authentication(kclient: FlaskClient) -> None:
    assert kclient.get("/cds-services").status_code == 200


def test_keys_are_compared_in_constant_time(
    kclient: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert kclient.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert kclient.get("/v1/models", headers={"Authorization": "Bearer x"}).status_code == 401
    assert len(calls) == 4  # every configured key is compared, match or not


def test_without_a_keys_file_v1_is_open(client: FlaskClient) -> None:
    assert client.get("/v1/models").status_code == 200


def test_the_keys_file_setting_fails_fast(tmp_path: Path) -> None:
    assert load_settings({"ECMO_API_KEYS_FILE": "/k"}).api_keys_file == Path("/k")
    short = tmp_path / "short"
    short.write_text("tooshort\n")
    empty = tmp_path / "empty"
    empty.write_text("# no keys yet\n")
    for path in (short, empty, tmp_path / "missing"):
        with pytest.raises(ConfigError, match="ECMO_API_KEYS_FILE"):
            create_app(Settings(api_keys_file=path))


@pytest.mark.parametrize(
    ("method", "template", "url"),
    [
        ("GET", "/v1/models", "/v1/models"),
        ("POST", "/v1/models/{name}/predict", "/v1/models/weaning/predict"),
        ("POST", "/v2/models/{name}/infer", "/v2/models/weaning/infer"),
    ],
)
def test_the_refusal_is_the_documented_401(
    kclient: FlaskClient, method: str, template: str, url: str
) -> None:
    from tests.contract.spec import assert_matches_spec

    response = kclient.open(url, method=method, json={"inputs": WEANING_INPUTS})
    assert response.status_code == 401
    assert_matches_spec(response, template, method)
