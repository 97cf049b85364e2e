"""Issue 19 items 1 and 2 through real gunicorn (the repository's config, as scripts/serve runs it):
a failure inside one model version never ends the master, at start or on SIGHUP, and a version
caught half-copied by a reload never replaces the one serving."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.harness import LoadClient, request
from tests.factories import ICH_INPUTS, WEANING_INPUTS
from tests.faults import (
    break_card_encoding,
    edit_manifest,
    half_copied,
    make_unreadable,
    passed_validation,
)
from tests.server import (
    GUNICORN_ARGS,
    REPO,
    Server,
    free_port,
    gunicorn,
    ready_status,
    server_errors,
    start_server,
    stop_server,
    wait_until,
)

pytestmark = pytest.mark.slow
WORKERS = 2


def _predict_ich(_: int) -> tuple[str, str, Any]:
    return "POST", "/v1/models/ich/predict", {"inputs": ICH_INPUTS}


def _defaults(port: int) -> dict[str, str]:
    status, listing = request(port, "GET", "/v1/models")
    assert status == 200
    return {m["name"]: m["version"] for m in listing["models"] if m["default"]}


def _reload(server: Server) -> None:
    """SIGHUP, then wait until new workers replaced the old ones."""
    old = server.workers()
    os.kill(server.pid, signal.SIGHUP)
    server.wait_workers(WORKERS, timeout=30, exclude=old)


@pytest.fixture
def unready_server(tmp_path: Path) -> Iterator[Any]:
    """Start gunicorn without waiting for readiness (the models are broken on purpose)."""
    started: list[Server] = []

    def start(models: Path) -> Server:
        port = free_port()
        (tmp_path / "prom").mkdir()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ECMO_")},
            "ECMO_BIND": f"127.0.0.1:{port}",
            "ECMO_WORKERS": str(WORKERS),
            "ECMO_MODEL_DIR": str(models),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        }
        argv = [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS]
        server = start_server(argv, env, REPO, port, tmp_path / "gunicorn.log")
        started.append(server)
        return server

    yield start
    for server in started:
        stop_server(server)
        assert not server_errors(server.logs())


def test_an_unreadable_artifact_and_a_non_utf8_card_at_start_leave_the_master_serving(
    unready_server: Any, models_copy: Path
) -> None:
    make_unreadable(models_copy / "ich" / "1.0.0" / "model.joblib")
    break_card_encoding(models_copy / "weaning" / "1.0.0")
    shutil.copytree(REPO / "models" / "weaning" / "1.0.0", models_copy / "weaning" / "0.9.0")
    edit_manifest(models_copy / "weaning" / "0.9.0", version="0.9.0")
    server = unready_server(models_copy)

    def live() -> bool:
        assert server.proc.poll() is None, (
            f"master exited {server.proc.returncode}:\n{server.logs()}"
        )
        return ready_status(server.port, "/health/live") == 200

    wait_until(live, 60, "liveness")
    status, body = request(server.port, "GET", "/health/ready")
    assert status == 503, body
    reasons = {(m["name"], m["version"]): m.get("reason", "") for m in body["models"]}
    assert "model.joblib could not be read" in reasons[("ich", "1.0.0")]
    assert "MODEL_CARD.md is not UTF-8" in reasons[("weaning", "1.0.0")]
    assert str(models_copy) not in str(body)
    # weaning 0.9.0 verified, so it is weaning's default; ich has nothing to serve.
    status, answer = request(
        server.port, "POST", "/v1/models/weaning/predict", {"inputs": WEANING_INPUTS}
    )
    assert status == 200 and answer["model"]["version"] == "0.9.0"
    assert request(server.port, "POST", "/v1/models/ich/predict", {"inputs": ICH_INPUTS})[0] == 503
    assert server.proc.poll() is None


def test_sighup_with_broken_new_versions_keeps_the_master_and_the_serving_versions(
    tmp_path: Path, models_copy: Path
) -> None:
    with gunicorn(tmp_path, {"ECMO_MODEL_DIR": str(models_copy)}, workers=WORKERS) as server:
        server.wait_workers(WORKERS, timeout=15)
        for name, breakage in (("ich", "artifact"), ("weaning", "card")):
            new = models_copy / name / "2.0.0"
            shutil.copytree(models_copy / name / "1.0.0", new)
            edit_manifest(new, version="2.0.0", site_validation=passed_validation())
            if breakage == "artifact":
                make_unreadable(new / "model.joblib")
            else:
                break_card_encoding(new)
        _reload(server)
        assert server.proc.poll() is None, server.logs()
        assert _defaults(server.port) == {"ich": "1.0.0", "weaning": "1.0.0"}
        status, body = request(server.port, "GET", "/health/ready")
        assert status == 200
        broken = {(m["name"], m["version"]) for m in body["models"] if not m["ready"]}
        assert broken == {("ich", "2.0.0"), ("weaning", "2.0.0")}
        assert request(server.port, "POST", *_predict_ich(0)[1:])[0] == 200


def test_a_reload_during_a_non_atomic_copy_keeps_serving_the_valid_version(
    tmp_path: Path, models_copy: Path, report: Any
) -> None:
    with gunicorn(tmp_path, {"ECMO_MODEL_DIR": str(models_copy)}, workers=WORKERS) as server:
        server.wait_workers(WORKERS, timeout=15)
        load = LoadClient(server.port, _predict_ich, threads=4, max_requests=20_000, max_seconds=40)
        load.start()
        try:
            time.sleep(0.5)
            # `cp -r 1.0.0 2.0.0` caught half-way: a validated manifest, half an artifact.
            source, target = models_copy / "ich" / "1.0.0", models_copy / "ich" / "2.0.0"
            half_copied(source, target)
            edit_manifest(target, version="2.0.0", site_validation=passed_validation())
            _reload(server)
            during = _defaults(server.port)["ich"]
            time.sleep(0.5)
            # The copy finishes; the next reload may take the new, validated version.
            shutil.copyfile(source / "model.joblib", target / "model.joblib")
            _reload(server)
            time.sleep(0.5)
        finally:
            load.stop()
        versions = [r.body["model"]["version"] for r in load.results if r.ok]
        report(
            f"[non-atomic copy] {load.counts()} default_during_copy={during} "
            f"versions_seen={sorted(set(versions))}"
        )
        assert during == "1.0.0"
        assert not load.failed, [(r.status, r.error, r.body) for r in load.failed][:3]
        assert _defaults(server.port)["ich"] == "2.0.0"
        assert versions[-1] == "2.0.0"
