"""python -m bench.amplification: how much a hostile body makes the service answer and work (issue 19.4).

For each protocol, a body of unknown keys just under ECMO_MAX_BODY_BYTES (default 4 MiB) is posted
through the app (in process, the shipped models); printed: bytes in, bytes out, their ratio, and the
server time per request next to the time of a valid request of the same protocol (a ratio, not a
goal: the machine's speed cancels out). Before the error cap a 3.64 MB body came back as 22.5 MB.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask.testing import FlaskClient

from service.app import create_app
from service.config import REPO_MODELS_DIR, Settings

LIMIT = 4 * 1024 * 1024
WEANING = {
    "apache_ii": 22,
    "vis_0h": 40,
    "vis_24h": 12,
    "lactate_24h": {"value": 2.8, "unit": "mmol/L"},
}
OIP = {
    "inputs": [
        {"name": "apache_ii", "shape": [1], "datatype": "INT64", "data": [22]},
        {"name": "vis_0h", "shape": [1], "datatype": "FP64", "data": [40]},
        {"name": "vis_24h", "shape": [1], "datatype": "FP64", "data": [12]},
        {
            "name": "lactate_24h",
            "shape": [1],
            "datatype": "FP64",
            "data": [2.8],
            "parameters": {"unit": "mmol/L"},
        },
    ]
}


def padded(valid: dict[str, Any], target: dict[str, Any]) -> bytes:
    """valid, with unknown keys added to `target` (an object inside it) up to just under LIMIT."""
    n = (LIMIT - 1024 - len(json.dumps(valid))) // len('"unknown_key_100000": 1, ')
    target.update({f"unknown_key_{i}": 1 for i in range(n)})
    return json.dumps(valid).encode()


def timed(client: FlaskClient, path: str, body: bytes, runs: int) -> tuple[int, int, float]:
    best = float("inf")
    status = size = 0
    for _ in range(runs):
        start = time.perf_counter()
        r = client.post(path, data=body, content_type="application/json")
        best = min(best, time.perf_counter() - start)
        status, size = r.status_code, len(r.data)
    return status, size, best


def main() -> None:
    app = create_app(Settings(model_dir=REPO_MODELS_DIR, max_body_bytes=LIMIT))
    client = app.test_client()
    cases: list[tuple[str, str, dict[str, Any], Any]] = []
    single = {"inputs": dict(WEANING)}
    cases.append(("v1 single", "/v1/models/weaning/predict", single, single))
    batch = {"patients": [{"inputs": dict(WEANING)}]}
    cases.append(("v1 batch", "/v1/models/weaning/predict/batch", batch, batch["patients"][0]))
    oip = json.loads(json.dumps(OIP))
    cases.append(("OIP", "/v2/models/weaning/infer", oip, oip))
    print(
        f"{'protocol':<10} {'in':>9} {'status':>6} {'out':>8} {'out/in':>7} {'ms':>7} {'x valid':>8}"
    )
    for label, path, valid, target in cases:
        _, _, base = timed(client, path, json.dumps(valid).encode(), 20)
        body = padded(valid, target)
        status, size, took = timed(client, path, body, 3)
        print(
            f"{label:<10} {len(body):>9} {status:>6} {size:>8} {size / len(body):>7.4f} "
            f"{took * 1000:>7.1f} {took / base:>8.0f}"
        )


if __name__ == "__main__":
    main()
