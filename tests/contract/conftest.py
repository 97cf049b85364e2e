"""Contract fixtures: the shipped reference models (models/), with the limits tests/conftest.py
uses (50 patients, 64 KiB), a copy whose weaning artifact was tampered with (not ready), and one
that requires a CDS Hooks JWT (401 examples)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm

from service.app import create_app
from service.config import REPO_MODELS_DIR, Settings
from tests.contract.no_5xx import _no_server_errors, allow_server_errors  # noqa: F401

MAX_BATCH = 50
MAX_BODY = 64 * 1024


def shipped_settings(model_dir: Path = REPO_MODELS_DIR) -> Settings:
    return Settings(model_dir=model_dir, max_batch=MAX_BATCH, max_body_bytes=MAX_BODY)


@pytest.fixture(scope="session")
def shipped_app() -> Flask:
    return create_app(shipped_settings())


@pytest.fixture
def shipped_client(shipped_app: Flask) -> Iterator[FlaskClient]:
    with shipped_app.test_client() as c:
        yield c


@pytest.fixture(scope="session")
def tampered_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    root = tmp_path_factory.mktemp("tampered") / "models"
    shutil.copytree(REPO_MODELS_DIR, root)
    with (root / "weaning" / "1.0.0" / "model.joblib").open("ab") as fh:
        fh.write(b"\0")
    return create_app(shipped_settings(root))


EXPLAIN_KEY = "x4Qm1m0Yk9o0xv0y0mXWmE3E3cJtqj7V4e3wqj0bK2c="
"""A fixed Fernet key for the "why this risk" examples (tests only)."""


@pytest.fixture(scope="session")
def explain_app() -> Flask:
    return create_app(dataclasses.replace(shipped_settings(), explain_keys=(EXPLAIN_KEY,)))


@pytest.fixture(scope="session")
def secured_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwk = json.loads(ECAlgorithm.to_jwk(key))
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "ehr-1", "alg": "ES384", "use": "sig"}]}))
    settings = dataclasses.replace(
        shipped_settings(),
        cds_jwt_required=True,
        public_base_url="http://localhost",
        cds_jwks_file=jwks,
        cds_allowed_issuers=("https://ehr.example.org",),
    )
    return create_app(settings)
