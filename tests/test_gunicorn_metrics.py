"""Under gunicorn with several workers, /metrics counts every worker's predictions exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import ICH_INPUTS, write_model
from tests.server import gunicorn

pytestmark = pytest.mark.slow


def total(text: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def predict(url: str) -> int:
    # A new connection per request lets the kernel spread requests over the workers.
    r = requests.post(
        f"{url}/v1/models/ich/predict",
        json={"inputs": ICH_INPUTS},
        headers={"Connection": "close"},
        timeout=10,
    )
    return r.status_code


def test_three_workers_report_exactly_n_predictions(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_model(models, "weaning")
    write_model(models, "ich")
    with gunicorn(tmp_path, {"ECMO_MODEL_DIR": str(models)}, workers=3) as server:
        workers = {str(w) for w in server.wait_workers(3, timeout=30)}
        multiproc = next(tmp_path.glob("prom-*"))
        n = 0
        counting: set[str] = set()
        # Which worker takes a request is the kernel's choice (behind nginx, a sequential client
        # may be answered by one worker only): send concurrent rounds until two have answered.
        with ThreadPoolExecutor(max_workers=6) as pool:
            for _ in range(20):
                statuses = list(pool.map(lambda _: predict(server.url), range(30)))
                assert statuses == [200] * 30
                n += 30
                counting = {p.stem.rsplit("_", 1)[1] for p in multiproc.glob("counter_*.db")}
                if len(counting & workers) >= 2:
                    break
        print(f"\n{n} predictions answered by workers {sorted(counting)} of {sorted(workers)}")
        assert len(counting & workers) >= 2, "requests were not spread over workers"
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        assert total(text, "ecmo_predictions_total", model="ich") == n
        assert total(text, "ecmo_predicted_probability_count", model="ich") == n
        assert total(text, "ecmo_http_requests_total", route="/v1/models/<name>/predict") == n
        # model_info is "livemax": one series per model, not one per worker.
        assert total(text, "ecmo_model_info", name="ich") == 1
