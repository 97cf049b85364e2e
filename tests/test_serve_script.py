"""scripts/serve: two instances on one host keep their own metrics (issue 15, item 8)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import requests

from tests.factories import ICH_INPUTS, write_model
from tests.server import REPO, Server, free_port, running
from tests.test_gunicorn_metrics import total

pytestmark = pytest.mark.slow


def test_two_instances_of_scripts_serve_do_not_share_or_wipe_metrics(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_model(models, "weaning")
    write_model(models, "ich")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ECMO_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    base.update({"ECMO_MODEL_DIR": str(models), "ECMO_WORKERS": "1", "TMPDIR": str(tmp)})

    def serve(port: int) -> AbstractContextManager[Server]:
        env = {**base, "ECMO_BIND": f"127.0.0.1:{port}"}
        return running(["bash", "scripts/serve"], env, REPO, port, tmp_path / f"serve-{port}.log")

    port_a, port_b = free_port(), free_port()
    with serve(port_a) as a:
        for _ in range(3):
            r = requests.post(
                f"{a.url}/v1/models/ich/predict", json={"inputs": ICH_INPUTS}, timeout=10
            )
            assert r.status_code == 200
        with serve(port_b) as b:
            r = requests.post(
                f"{b.url}/v1/models/ich/predict", json={"inputs": ICH_INPUTS}, timeout=10
            )
            assert r.status_code == 200
            text_a = requests.get(f"{a.url}/metrics", timeout=10).text
            text_b = requests.get(f"{b.url}/metrics", timeout=10).text
            dirs = list(tmp.glob("ecmo-prom-*"))
    # Starting B neither wiped A's counts nor added them to B's.
    assert total(text_a, "ecmo_predictions_total", model="ich") == 3
    assert total(text_b, "ecmo_predictions_total", model="ich") == 1
    assert len(dirs) == 2, dirs
    # Each instance removes the directory it made for itself when it stops.
    assert list(tmp.glob("ecmo-prom-*")) == []
