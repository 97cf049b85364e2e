from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.factories import write_model

# Any 5xx other than 503 (not ready) fails the test that caused it, across the whole suite.
pytest_plugins = ["tests.contract.no_5xx"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both kinds as tiny models, shared read-only by the session."""
    root = tmp_path_factory.mktemp("models")
    write_model(root, "weaning")
    write_model(root, "ich")
    return root


@pytest.fixture
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, max_batch=50, max_body_bytes=64 * 1024)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c
