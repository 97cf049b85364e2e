"""The Dockerfile's contract, without a Docker engine: its exact CMD, ENV and HEALTHCHECK are
parsed out of the Dockerfile and run here against real gunicorn.

Differences from the container, all explicit: the working directory is the repository root
(the image's WORKDIR /app holds the same service/ and models/), /opt/venv/bin is this test's
venv, ECMO_BIND is 127.0.0.1:<free port> (tests bind loopback only) and PROMETHEUS_MULTIPROC_DIR
is a private tmp dir (another run on this machine may be using the image's path).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from service.config import REPO_MODELS_DIR
from tests.deploy.harness import host_env, parse_dockerfile, request
from tests.factories import WEANING_INPUTS
from tests.server import REPO, free_port, running

SPEC = parse_dockerfile()


def test_cmd_is_gunicorn_with_the_repository_config() -> None:
    assert SPEC.cmd == ["gunicorn", "-c", "service/gunicorn_conf.py", "service.app:create_app()"]


def test_models_are_baked_in_at_the_default_model_dir() -> None:
    # The service runs from WORKDIR, so service/config.py's default model dir is WORKDIR/models.
    assert SPEC.workdir == "/app"
    assert ("service/", "./service/") in SPEC.copies
    assert ("models/", "./models/") in SPEC.copies
    assert REPO_MODELS_DIR == REPO / "models"
    # Left unset so the default applies; a mounted volume overrides it with ECMO_MODEL_DIR.
    assert "ECMO_MODEL_DIR" not in SPEC.env


def test_image_listens_on_all_interfaces_and_runs_as_non_root() -> None:
    assert SPEC.env["ECMO_BIND"].startswith("0.0.0.0:")
    user = [ln for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.startswith("USER ")]
    uid = user[-1].split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes can check runAsNonRoot


@pytest.mark.slow
def test_image_cmd_serves_live_ready_and_a_prediction(tmp_path: Path) -> None:
    port = free_port()
    env = host_env(
        SPEC.env,
        ECMO_BIND=f"127.0.0.1:{port}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
    )
    with running(SPEC.cmd, env, REPO, port, tmp_path / "gunicorn.log") as server:
        assert request(port, "GET", "/health/live")[0] == 200
        status, ready = request(port, "GET", "/health/ready")
        assert status == 200, ready
        served = {(m["name"], m["version"]) for m in ready["models"]}
        on_disk = {
            (d.parent.name, json.loads((d / "manifest.json").read_text())["version"])
            for d in (REPO / "models").glob("*/*")
            if (d / "manifest.json").exists()
        }
        assert served == on_disk

        status, body = request(
            port, "POST", "/v1/models/weaning/predict", {"inputs": WEANING_INPUTS}
        )
        assert status == 200, body
        assert 0.0 < body["probability"] < 1.0
        assert body["model"]["name"] == "weaning"

        # The HEALTHCHECK command, run with the same environment, passes against this server...
        health = subprocess.run(SPEC.healthcheck, env=env, cwd=REPO, timeout=10, check=False)
        assert health.returncode == 0
        server.proc.terminate()
        server.proc.wait(timeout=40)
    # ... and fails once the server is gone.
    health = subprocess.run(
        SPEC.healthcheck, env=env, cwd=REPO, timeout=10, check=False, capture_output=True
    )
    assert health.returncode != 0
