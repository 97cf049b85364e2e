"""POST /v1/models/<name>/predict and /predict/batch: load schema -> core -> response body."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flask import Blueprint, Response, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from service.api.body import read_json, requested_version
from service.api.deps import Deps
from service.api.errors import flatten_errors, with_field_error
from service.api.responses import json_response
from service.api.v1.fastload import fast_load
from service.api.v1.schemas import batch_schema, patient_schema
from service.core.columns import ColumnScores
from service.core.kinds.base import ModelKind
from service.core.manifest import RiskBand
from service.core.predictor import Prediction, direction_of
from service.core.registry import LoadedModel
from service.errors import FieldError, InvalidInput

ECHOED = ("patient_reference", "encounter_reference", "correlation_id")
_INDEX = re.compile(r"\.\d+(?=\.|$)")


def prediction_body(p: Prediction) -> dict[str, Any]:
    return {
        "probability": p.probability,
        "outcome": p.model.kind.outcome,
        "risk_band": _band(p.band),
        "log_odds": p.log_odds,
        "baseline_log_odds": p.baseline_log_odds,
        "contributions": [
            {
                "feature": c.feature,
                "label": c.label,
                "value": c.value,
                "unit": c.unit,
                "log_odds": c.log_odds,
                "direction": direction_of(c.log_odds),
            }
            for c in p.contributions
        ],
        "derived": p.derived,
        "warnings": [{"path": w.path, "code": w.code, "message": w.message} for w in p.warnings],
    }


def column_bodies(model: LoadedModel, scores: ColumnScores) -> list[dict[str, Any] | None]:
    """prediction_body for every plain row of a column score (None for the others): the same
    keys, values and contribution order as the per-patient path gives the same patient."""
    manifest_features = model.manifest.features
    names = [f.name for f in manifest_features]
    labels = [f.label for f in manifest_features]
    units = [f.unit for f in manifest_features]
    # One risk_band object per band, shared by the items that fall in it.
    bands = [_band(b) for b in model.manifest.risk_bands]
    outcome, baseline = model.kind.outcome, model.linear.baseline
    probability, log_odds = scores.probability.tolist(), scores.log_odds.tolist()
    contributions, values = scores.contributions.tolist(), scores.features.tolist()
    # Largest magnitude first, ties in feature order: core.predictor's (stable) sort.
    ranks = np.argsort(-np.abs(scores.contributions), axis=1, kind="stable").tolist()
    band = scores.band.tolist()
    derived_names = list(scores.derived)
    derived = list(zip(*(v.tolist() for v in scores.derived.values()), strict=True)) or None
    bodies: list[dict[str, Any] | None] = []
    # The literal below is prediction_body's with direction_of inlined: 1,000 patients make
    # 5,000 such calls, a tenth of a batch's time.
    for i, plain in enumerate(scores.plain.tolist()):
        if not plain:
            bodies.append(None)
            continue
        terms, x = contributions[i], values[i]
        bodies.append(
            {
                "probability": probability[i],
                "outcome": outcome,
                "risk_band": bands[band[i]],
                "log_odds": log_odds[i],
                "baseline_log_odds": baseline,
                "contributions": [
                    {
                        "feature": names[j],
                        "label": labels[j],
                        "value": x[j],
                        "unit": units[j],
                        "log_odds": terms[j],
                        "direction": (
                            "raises" if terms[j] > 0 else "lowers" if terms[j] < 0 else "neutral"
                        ),
                    }
                    for j in ranks[i]
                ],
                "derived": dict(zip(derived_names, derived[i], strict=True)) if derived else {},
                "warnings": [],
            }
        )
    return bodies


@functools.lru_cache(maxsize=64)
def _band(band: RiskBand) -> dict[str, Any]:
    """A band as JSON; one object per band, shared by every answer that falls in it (bands are
    immutable, and answers are only serialised)."""
    return {
        "name": band.name,
        "lower": band.lower,
        "upper": band.upper,
        "description": band.description,
    }


def model_ref(model: LoadedModel) -> dict[str, str]:
    return {"name": model.name, "version": model.version, "sha256": model.sha256}


def create_predict_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("predict", __name__)
    registry, metrics, settings = deps.registry, deps.metrics, deps.settings
    scoring = deps.scoring
    # Metric labels stay bounded: a model name the registry knows, else "<unknown>".
    served = frozenset(s.name for s in registry.statuses)

    def count_rejections(name: str, errors: list[FieldError]) -> None:
        known = name if name in served else "<unknown>"
        for e in errors:
            field = _INDEX.sub("", e.path) if e.rule != "unknown_field" else "<unknown>"
            metrics.validation_errors.labels(model=known, field=field or "<body>").inc()

    def load(kind: ModelKind, name: str, payload: Any, batch: bool) -> dict[str, Any]:
        # A fully valid body takes the plain-check path; anything else goes to marshmallow,
        # which words every error (see service/api/v1/fastload.py).
        fast = fast_load(kind.name, payload, batch)
        if fast is not None:
            return fast
        schema = batch_schema(kind) if batch else patient_schema(kind)
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
            return scoring.one(model, inputs)
        except InvalidInput as exc:
            exc.errors = [e.prefixed(prefix) for e in exc.errors]
            raise

    def observe(p: Prediction) -> None:
        m = p.model
        metrics.observe_prediction(m.name, m.version, p.band.name, p.probability)

    @bp.post("/v1/models/<name>/predict")
    def predict_one(name: str) -> Response:
        # Each use of a `request`/`g` proxy is a context lookup: resolve them once.
        req, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        ctx.model = name
        model = registry.get(name, requested_version(req))
        data = load(model.kind, name, read_json(req), batch=False)
        try:
            p = score(model, data["inputs"], "inputs")
        except InvalidInput as exc:
            count_rejections(name, exc.errors)
            raise
        observe(p)
        body = {"request_id": ctx.request_id, "model": model_ref(model), **prediction_body(p)}
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
        data = load(model.kind, name, payload, batch=True)
        patients = data["patients"]
        # Columns first, then each remaining patient (core.scoring).
        batch = scoring.patients(model, [p["inputs"] for p in patients])
        results: list[dict[str, Any] | None] = (
            column_bodies(model, batch.columns) if batch.columns else [None] * batch.n
        )
        for i, p in batch.predictions.items():
            results[i] = prediction_body(p)
        errors = [
            e.prefixed(f"patients.{i}.inputs") for i, row in batch.errors.items() for e in row
        ]
        if errors:
            count_rejections(name, errors)
            raise InvalidInput(
                f"{len(errors)} input value(s) in the batch are not acceptable", errors
            )
        bodies = [item for item in results if item is not None]
        metrics.observe_predictions(
            model.name,
            model.version,
            [item["risk_band"]["name"] for item in bodies],
            [item["probability"] for item in bodies],
        )
        for patient, item in zip(patients, bodies, strict=True):
            for key in ECHOED:
                if key in patient:
                    item[key] = patient[key]
        return json_response(
            {"request_id": g.request_id, "model": model_ref(model), "predictions": bodies}
        )

    return bp
