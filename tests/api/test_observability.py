"""Metrics count what happened; logs and metric labels never carry patient data."""

from __future__ import annotations

import json
import logging
import random
import string
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.config import Settings
from service.logs import JsonFormatter
from tests.factories import ICH_INPUTS, WEANING_INPUTS, write_model


def sample(client: FlaskClient, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def test_predictions_are_counted_by_model_version_and_band(client: FlaskClient) -> None:
    for _ in range(3):
        client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS})
    client.post("/v1/models/ich/predict/batch", json={"patients": [{"inputs": ICH_INPUTS}] * 4})
    assert sample(client, "ecmo_predictions_total", model="ich", version="1.0.0") == 7
    assert sample(client, "ecmo_predicted_probability_count", model="ich") == 7
    route = "/v1/models/<name>/predict"
    assert sample(client, "ecmo_http_requests_total", route=route, method="POST", status="200") == 3


def test_validation_errors_are_counted_by_field_without_values(client: FlaskClient) -> None:
    client.post("/v1/models/weaning/predict", json={"inputs": {**WEANING_INPUTS, "apache_ii": 99}})
    client.post("/v1/models/weaning/predict", json={"inputs": {**WEANING_INPUTS, "Smith, John": 1}})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'ecmo_validation_errors_total{field="inputs.apache_ii",model="weaning"} 1.0' in text
    assert (
        'field="<unknown>"' in text
        and "Smith" not in text
        and "99" not in text.split("ecmo_validation")[1][:200]
    )


def test_model_info_names_version_and_sha(client: FlaskClient) -> None:
    client.get("/health/live")
    sha = client.get("/v1/models/ich").get_json()["artifact"]["sha256"]
    assert f'ecmo_model_info{{name="ich",sha256="{sha}",version="1.0.0"}} 1.0' in client.get(
        "/metrics"
    ).get_data(as_text=True)


def test_logs_are_structured_and_carry_no_payload(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ecmo")
    body: dict[str, Any] = {
        "inputs": {**ICH_INPUTS, "min_platelets": {"value": 123.456, "unit": "10*9/L"}},
        "patient_reference": "Patient/secret-mrn-991",
    }
    r = client.post("/v1/models/ich/predict", json=body, headers={"X-Request-ID": "trace-1"})
    bad = client.post(
        "/v1/models/ich/predict", json={**body, "inputs": {**body["inputs"], "gwr": 9.87}}
    )
    assert r.status_code == 200 and bad.status_code == 422
    records = [rec for rec in caplog.records if rec.name == "ecmo.access"]
    assert records[0].__dict__["request_id"] == "trace-1"
    assert records[0].__dict__["route"] == "/v1/models/<name>/predict"
    everything = caplog.text + " ".join(str(rec.__dict__) for rec in caplog.records)
    for secret in ("secret-mrn-991", "123.456", "9.87"):
        assert secret not in everything


def test_request_latency_is_histogrammed_by_route_template_and_method(client: FlaskClient) -> None:
    for _ in range(3):
        client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS})
    text = client.get("/metrics").get_data(as_text=True)
    labels = 'method="POST",route="/v1/models/<name>/predict"'
    assert f"ecmo_http_request_duration_seconds_count{{{labels}}} 3.0" in text
    assert f'ecmo_http_request_duration_seconds_bucket{{le="+Inf",{labels}}} 3.0' in text


def test_an_access_log_line_is_one_json_object_with_the_request_fields(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ecmo")
    client.post(
        "/v1/models/ich/predict", json={"inputs": ICH_INPUTS}, headers={"X-Request-ID": "t-2"}
    )
    record = next(rec for rec in caplog.records if rec.name == "ecmo.access")
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "ecmo.access"
    assert line["message"] == "request" and line["ts"].endswith("Z")
    assert {k: line[k] for k in ("request_id", "method", "route", "status", "model")} == {
        "request_id": "t-2",
        "method": "POST",
        "route": "/v1/models/<name>/predict",
        "status": 200,
        "model": "ich",
    }
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0


def test_the_log_formatter_finds_extra_fields_wherever_a_record_holds_them() -> None:
    usual = logging.getLogger("ecmo.t").makeRecord(
        "ecmo.t", logging.WARNING, "f.py", 1, "m", (), None, extra={"route": "/x", "status": 201}
    )
    # A record whose extra field comes before the standard attributes (a custom record factory
    # could build one), with a private attribute that is never logged.
    unusual = logging.LogRecord.__new__(logging.LogRecord)
    unusual.route = "/y"
    unusual.__dict__.update(
        {k: v for k, v in usual.__dict__.items() if k not in ("route", "status")}
    )
    unusual._private = 1
    for record, extras in ((usual, {"route": "/x", "status": 201}), (unusual, {"route": "/y"})):
        line = json.loads(JsonFormatter().format(record))
        assert (
            line
            == {"ts": line["ts"], "level": "WARNING", "logger": "ecmo.t", "message": "m"} | extras
        )


def test_every_answer_carries_one_request_id_and_one_server_timing(client: FlaskClient) -> None:
    answers = [
        client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS}),
        client.post("/v1/models/ich/predict", json={"inputs": {**ICH_INPUTS, "gwr": 9.9}}),
        client.get("/v1/models/nope"),
        client.get("/health/live"),
        client.get("/metrics"),
    ]
    assert [r.status_code for r in answers] == [200, 422, 404, 200, 200]
    for r in answers:
        assert len(r.headers.getlist("X-Request-ID")) == 1
        assert len(r.headers.getlist("Server-Timing")) == 1


def _request_series(client: FlaskClient) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("ecmo_http_")
    }


def test_random_methods_and_paths_cannot_grow_the_series_count(client: FlaskClient) -> None:
    """Label values are bounded: made-up methods and paths fold into one value each, so an
    unauthenticated caller cannot create series (4 made-up methods used to create 64)."""
    rnd = random.Random(17)

    def noise(n: int) -> list[str]:
        sent = []
        for _ in range(n):
            method = "".join(rnd.choices(string.ascii_uppercase, k=rnd.randint(3, 9)))
            path = rnd.choice(["/v1/models", "/metrics", "/v1/models/ich/predict", "/"]) + (
                "/" + "".join(rnd.choices(string.ascii_lowercase, k=8))
                if rnd.random() < 0.5
                else ""
            )
            client.open(path, method=method)
            client.open("/" + "".join(rnd.choices(string.ascii_lowercase, k=12)))
            sent.append(method)
        return sent

    noise(20)
    before = _request_series(client)
    sent = noise(100)
    after = _request_series(client)
    assert after == before
    labels = {value for _, pairs in after for _, value in pairs}
    assert not set(sent) & labels
    assert {"<other>", "<unmatched>"} <= labels


def _inputs_seen(client: FlaskClient, model: str) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        s.labels["feature"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ecmo_input_feature_count" and s.labels["model"] == model
    }


def test_every_face_counts_the_scored_patients_inputs_per_feature(client: FlaskClient) -> None:
    """Input drift needs inputs: the JSON API (single and batch, column and per-patient paths),
    the OIP face and CDS Hooks each count their patients' canonical features, once each."""
    client.post("/v1/models/ich/predict", json={"inputs": ICH_INPUTS})
    hu = {**{k: v for k, v in ICH_INPUTS.items() if k != "gwr"}}
    hu |= {"grey_matter_hu": 37.5, "white_matter_hu": 30.0}  # per-patient path (GWR derived)
    batch = {"patients": [{"inputs": ICH_INPUTS}] * 3 + [{"inputs": hu}]}
    assert client.post("/v1/models/ich/predict/batch", json=batch).status_code == 200
    assert _inputs_seen(client, "ich") == {
        "gwr": 5,
        "stroke_history": 5,
        "ffp_volume_ml": 5,
        "min_platelets": 5,
    }
    tensors = [
        {"name": "apache_ii", "shape": [2], "datatype": "INT32", "data": [22, 22]},
        {"name": "vis_0h", "shape": [2], "datatype": "FP64", "data": [40.0, 40.0]},
        {"name": "vis_24h", "shape": [2], "datatype": "FP64", "data": [12.0, 12.0]},
        {
            "name": "lactate_24h",
            "shape": [2],
            "datatype": "FP64",
            "data": [2.8, 2.8],
            "parameters": {"unit": "mmol/L"},
        },
    ]
    r = client.post("/v2/models/weaning/infer", json={"inputs": tensors})
    assert r.status_code == 200, r.data
    assert set(_inputs_seen(client, "weaning").values()) == {2}
    text = client.get("/metrics").get_data(as_text=True)
    # The canonical value (mmol/L, 2.8) is counted in lactate's (2, 3] bucket, not its own label.
    bucket = (
        'ecmo_input_feature_bucket{feature="lactate_24h",le="%s",model="weaning",version="1.0.0"}'
    )
    assert f"{bucket % '2.0'} 0.0" in text and f"{bucket % '3.0'} 2.0" in text
    assert "2.8" not in "".join(line for line in text.splitlines() if "ecmo_input" in line)


def test_readiness_and_the_drift_reference_are_exported_per_model(client: FlaskClient) -> None:
    client.get("/health/live")
    assert sample(client, "ecmo_model_ready", model="ich", version="1.0.0") == 1
    manifest = client.get("/v1/models/ich").get_json()
    expected = manifest["reference_distribution"]["features"]["gwr"]
    text = client.get("/metrics").get_data(as_text=True)
    got = {
        float(s.labels["le"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ecmo_input_reference_fraction" and s.labels["feature"] == "gwr"
    }
    assert got == dict(zip(expected["le"], expected["cumulative_fraction"], strict=True))
    assert (
        sample(client, "ecmo_predicted_probability_reference_fraction", model="ich", le="1.0") == 1
    )


def test_a_refused_model_is_exported_as_not_ready(tmp_path: Path) -> None:
    write_model(tmp_path, "ich")
    write_model(tmp_path, "weaning")
    (tmp_path / "weaning" / "1.0.0" / "model.joblib").write_bytes(b"tampered")
    with create_app(Settings(model_dir=tmp_path)).test_client() as c:
        c.get("/health/ready")
        assert sample(c, "ecmo_model_ready", model="weaning") == 0
        assert sample(c, "ecmo_model_ready", model="ich") == 1


def test_inputs_are_counted_as_given_not_at_the_edge_they_are_scored_at(
    client: FlaskClient,
) -> None:
    """A value beyond the derivation range is scored at the range's edge (clinical safety), but
    drift is about what arrives: the histogram counts the value given."""
    patient = {**ICH_INPUTS, "ffp_volume": {"value": 5000, "unit": "mL"}}
    single = client.post("/v1/models/ich/predict", json={"inputs": patient})
    assert single.status_code == 200 and single.get_json()["extrapolated"] is True
    batch = client.post("/v1/models/ich/predict/batch", json={"patients": [{"inputs": patient}]})
    assert batch.status_code == 200
    labels = {"model": "ich", "feature": "ffp_volume_ml"}
    assert sample(client, "ecmo_input_feature_sum", **labels) == 10_000
    assert sample(client, "ecmo_input_feature_bucket", le="4000.0", **labels) == 0
    assert sample(client, "ecmo_input_feature_bucket", le="8000.0", **labels) == 2
