"""POST /v1/models/<name>/predict and /predict/batch: load schema -> core -> response body."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from service.api.body import read_json, requested_version
from service.api.deps import Deps
from service.api.errors import with_field_error
from service.api.fastload import fast_load
from service.api.responses import json_response
from service.api.schemas import BATCH_SCHEMAS, PATIENT_SCHEMAS, flatten_errors
from service.core.inputs import resolve
from service.core.predictor import Prediction, predict
from service.core.registry import LoadedModel
from service.errors import FieldError, InvalidInput, ServiceError

ECHOED = ("patient_reference", "encounter_reference", "correlation_id")
_INDEX = re.compile(r"\.\d+(?=\.|$)")


def prediction_body(p: Prediction) -> dict[str, Any]:
    band = p.band
    return {
        "probability": p.probability,
        "outcome": p.model.kind.outcome,
        "risk_band": {
            "name": band.name,
            "lower": band.lower,
            "upper": band.upper,
            "description": band.description,
        },
        "log_odds": p.log_odds,
        "baseline_log_odds": p.baseline_log_odds,
        "contributions": [
            {
                "feature": c.feature,
                "label": c.label,
                "value": c.value,
                "unit": c.unit,
                "log_odds": c.log_odds,
                "direction": c.direction,
            }
            for c in p.contributions
        ],
        "derived": p.derived,
        "warnings": [{"path": w.path, "code": w.code, "message": w.message} for w in p.warnings],
    }


def model_ref(model: LoadedModel) -> dict[str, str]:
    return {"name": model.name, "version": model.version, "sha256": model.sha256}


def create_predict_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("predict", __name__)
    registry, metrics, settings = deps.registry, deps.metrics, deps.settings

    def count_rejections(name: str, errors: list[FieldError]) -> None:
        known = name if name in PATIENT_SCHEMAS else "<unknown>"
        for e in errors:
            field = _INDEX.sub("", e.path) if e.rule != "unknown_field" else "<unknown>"
            metrics.validation_errors.labels(model=known, field=field or "<body>").inc()

    def load(schema_name: str, name: str, payload: Any, batch: bool) -> dict[str, Any]:
        # A fully valid body takes the plain-check path; anything else goes to marshmallow,
        # which words every error (see service/api/fastload.py).
        fast = fast_load(schema_name, payload, batch)
        if fast is not None:
            return fast
        schema = (BATCH_SCHEMAS if batch else PATIENT_SCHEMAS)[schema_name]
        try:
            data: dict[str, Any] = schema.load(payload)
        except ValidationError as exc:
            errors = flatten_errors(exc.messages)
            count_rejections(name, errors)
            raise InvalidInput(
                f"{len(errors)} field(s) do not match the request schema", errors
            ) from None
        return data

    def score(model: LoadedModel, inputs: Mapping[str, Any], prefix: str) -> Prediction:
        try:
            resolved = resolve(model.kind, inputs, settings.ffp_ml_per_unit)
        except InvalidInput as exc:
            exc.errors = [e.prefixed(prefix) for e in exc.errors]
            raise
        return predict(model, resolved)

    def observe(p: Prediction) -> None:
        m = p.model
        metrics.observe_prediction(m.name, m.version, p.band.name, p.probability)

    @bp.post("/v1/models/<name>/predict")
    def predict_one(name: str) -> Response:
        g.model = name
        model = registry.get(name, requested_version(request))
        data = load(model.kind.name, name, read_json(request), batch=False)
        try:
            p = score(model, data["inputs"], "inputs")
        except InvalidInput as exc:
            count_rejections(name, exc.errors)
            raise
        observe(p)
        body = {"request_id": g.request_id, "model": model_ref(model), **prediction_body(p)}
        for key in ECHOED:
            if key in data:
                body[key] = data[key]
        return json_response(body)

    @bp.post("/v1/models/<name>/predict/batch")
    def predict_batch(name: str) -> Response:
        g.model = name
        model = registry.get(name, requested_version(request))
        payload = read_json(request)
        patients = payload.get("patients") if isinstance(payload, dict) else None
        if isinstance(patients, list) and len(patients) > settings.max_batch:
            raise with_field_error(
                RequestEntityTooLarge(
                    f"a batch may carry at most {settings.max_batch} patients (got {len(patients)})"
                ),
                FieldError(
                    "patients",
                    f"{len(patients)} patients",
                    "max_items",
                    f"1 to {settings.max_batch} patients",
                ),
            )
        data = load(model.kind.name, name, payload, batch=True)
        predictions: list[Prediction] = []
        errors: list[FieldError] = []
        for i, patient in enumerate(data["patients"]):
            try:
                predictions.append(score(model, patient["inputs"], f"patients.{i}.inputs"))
            except ServiceError as exc:
                errors.extend(exc.errors)
        if errors:
            count_rejections(name, errors)
            raise InvalidInput(
                f"{len(errors)} input value(s) in the batch are not acceptable", errors
            )
        metrics.observe_predictions(
            model.name,
            model.version,
            [p.band.name for p in predictions],
            [p.probability for p in predictions],
        )
        results = []
        for patient, p in zip(data["patients"], predictions, strict=True):
            item = prediction_body(p)
            for key in ECHOED:
                if key in patient:
                    item[key] = patient[key]
            results.append(item)
        return json_response(
            {"request_id": g.request_id, "model": model_ref(model), "predictions": results}
        )

    return bp
