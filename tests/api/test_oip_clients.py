"""The Open Inference Protocol's own clients work as they are: tritonclient[http] (Triton and KServe).

Through a real gunicorn: the official client sends its request its own way (no Content-Type), which
the Flask test client would not reproduce.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import pytest

from tests.server import gunicorn

pytestmark = pytest.mark.slow


def test_the_official_triton_client_scores_with_units_in_request_parameters(
    tmp_path: Path,
) -> None:
    import tritonclient.http as triton  # heavy import (gevent): only this test needs it

    with gunicorn(tmp_path, workers=1) as server:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        try:
            assert client.is_server_live() and client.is_model_ready("ich")
            columns = {
                "gwr": ("FP64", [1.25, 1.40], None),
                "stroke_history": ("BOOL", [True, False], None),
                "ffp_volume": ("FP64", [1200.0, 0.0], "mL"),
                "min_platelets": ("FP64", [45.0, 180.0], "10*9/L"),
            }
            inputs, units = [], {}
            for name, (datatype, values, unit) in columns.items():
                tensor = triton.InferInput(name, [2], datatype)
                tensor.set_data_from_numpy(
                    np.array(values, dtype=bool if datatype == "BOOL" else np.float64),
                    binary_data=False,
                )
                if unit is not None:
                    # The client has no per-input parameters: a unit goes in the request's.
                    units[f"{name}.unit"] = unit
                inputs.append(tensor)
            outputs = [triton.InferRequestedOutput("probability", binary_data=False)]
            result = client.infer("ich", inputs, outputs=outputs, parameters=units)
            probability = result.as_numpy("probability")
        finally:
            client.close()
    assert probability is not None and probability.shape == (2,)
    assert 0 < probability[1] < probability[0] < 1


def test_an_oip_body_without_content_type_is_read_as_json(tmp_path: Path) -> None:
    body = {
        "inputs": [
            {"name": "gwr", "shape": [1], "datatype": "FP64", "data": [1.3]},
            {"name": "stroke_history", "shape": [1], "datatype": "BOOL", "data": [False]},
            {
                "name": "ffp_volume",
                "shape": [1],
                "datatype": "FP64",
                "data": [0],
                "parameters": {"unit": "mL"},
            },
            {
                "name": "min_platelets",
                "shape": [1],
                "datatype": "FP64",
                "data": [150],
                "parameters": {"unit": "10*9/L"},
            },
        ]
    }
    with gunicorn(tmp_path, workers=1) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("POST", "/v2/models/ich/infer", skip_accept_encoding=True)
        raw = json.dumps(body).encode()
        conn.putheader("Content-Length", str(len(raw)))
        conn.endheaders(raw)
        response = conn.getresponse()
        answer = json.loads(response.read())
        # A body that is not JSON, without a Content-Type, is still refused as JSON would be.
        conn.putrequest("POST", "/v2/models/ich/infer", skip_accept_encoding=True)
        conn.putheader("Content-Length", "5")
        conn.endheaders(b"hello")
        refused = conn.getresponse()
        refusal = json.loads(refused.read())
        conn.close()
    assert response.status == 200, answer
    assert answer["model_name"] == "ich"
    assert refused.status == 400 and refusal["error"] == refusal["detail"]
