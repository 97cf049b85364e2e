"""Under gunicorn, every line on the log stream is one JSON object: gunicorn's own lines too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.factories import write_model
from tests.server import gunicorn

pytestmark = pytest.mark.slow


def test_gunicorn_and_service_lines_share_one_json_format(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_model(models, "ich")
    with gunicorn(tmp_path, {"ECMO_MODEL_DIR": str(models)}, workers=1) as server:
        assert requests.get(f"{server.url}/v1/models", timeout=10).status_code == 200
    lines = [line for line in server.logs().splitlines() if line.strip()]
    loggers = set()
    for line in lines:
        entry = json.loads(line)  # a plain-text line fails here
        assert isinstance(entry, dict) and {"ts", "level", "logger", "message"} <= entry.keys()
        loggers.add(entry["logger"])
    # gunicorn's master and worker lines ("Listening at", "Booting worker") are among them.
    assert {"gunicorn.error", "ecmo.access"} <= loggers, loggers
    assert any("Booting worker" in json.loads(line)["message"] for line in lines)
