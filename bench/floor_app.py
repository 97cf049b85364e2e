"""The floor: a minimal Flask app answering a constant JSON body, served by the same gunicorn config.

    gunicorn -c service/gunicorn_conf.py 'bench.floor_app:create_app("bench-results/floor.json")'

It reads the request body (as any POST handler must) and returns, for
``POST /v1/models/<name>/predict``, the bytes stored under ``name`` in the JSON file given to
create_app(): the harness fills that file with a real response of the service, so both apps send
the same number of bytes. Without a file it answers a built-in body of about the same size.
Nothing else runs per request: no validation, no model, no metrics, no logging. Whatever the
service costs above this app is the cost of our own code.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask, Response, request

_DEFAULT_BODY = json.dumps(
    {
        "model": {"name": "floor", "version": "1.0.0", "sha256": "0" * 64},
        "probability": 0.4242,
        "log_odds": -0.3087,
        "baseline_log_odds": -0.25,
        "risk_band": {"name": "intermediate", "lower": 0.3, "upper": 0.6},
        "contributions": [
            {"feature": f"feature_{i}", "value": 1.0, "unit": "unit", "log_odds": 0.1}
            for i in range(4)
        ],
        "warnings": [],
    }
).encode()


def create_app(responses_file: str | None = None) -> Flask:
    bodies: dict[str, bytes] = {}
    if responses_file:
        raw = json.loads(Path(responses_file).read_text(encoding="utf-8"))
        bodies = {name: str(text).encode() for name, text in raw.items()}
    app = Flask(__name__)

    @app.post("/v1/models/<name>/predict")
    def predict(name: str) -> Response:
        request.get_data()
        return Response(bodies.get(name, _DEFAULT_BODY), mimetype="application/json")

    @app.get("/health/ready")
    def ready() -> Response:
        return Response(b'{"status":"ready"}', mimetype="application/json")

    return app
