"""POST /v1/models/<name>/predict and /predict/batch: load schema -> core -> response body."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from flask import Blueprint, Request, Response, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from service.api.body import read_json, requested_version
from service.api.deps import Deps
from service.api.errors import flatten_errors, with_field_error
from service.api.responses import FHIR_JSON, json_response
from service.api.strict import load as strict_load
from service.api.v1.fastload import fast_load
from service.api.v1.schemas import REFERENCES, batch_schema, patient_schema
from service.core.columns import ColumnScores
from service.core.kinds.base import ModelKind
from service.core.manifest import RiskBand
from service.core.predictor import Prediction
from service.core.registry import LoadedModel
from service.core.riskassessment import (
    ENCOUNTER_REFERENCE,
    collection,
    is_subject_reference,
    risk_assessment,
)
from service.errors import FieldError, InvalidInput

_INDEX = re.compile(r"\.\d+(?=\.|$)")


def _body(
    outcome: str,
    probability: float,
    band: dict[str, Any],
    log_odds: float,
    baseline: float,
    contributions: list[dict[str, Any]],
    derived: dict[str, float],
    warnings: list[dict[str, str]],
    extrapolated: bool,
) -> dict[str, Any]:
    """The one place a prediction's JSON is written (both paths below call it)."""
    return {
        "probability": probability,
        "outcome": outcome,
        "risk_band": band,
        "log_odds": log_odds,
        "baseline_log_odds": baseline,
        "contributions": contributions,
        "derived": derived,
        "warnings": warnings,
        "extrapolated": extrapolated,
    }


def _contributions(
    names: Sequence[str],
    labels: Sequence[str],
    units: Sequence[str],
    values: Sequence[float],
    terms: Sequence[float],
    order: Iterable[int],
) -> list[dict[str, Any]]:
    """The contributions in `order`; direction as core.predictor.direction_of words it, inlined:
    1,000 patients make 4,000 contributions, and the calls were a tenth of a batch's time."""
    out = []
    # A loop, not a comprehension: before Python 3.12 a comprehension is a function call.
    for j in order:
        term = terms[j]
        out.append(
            {
                "feature": names[j],
                "label": labels[j],
                "value": values[j],
                "unit": units[j],
                "log_odds": term,
                "direction": "raises" if term > 0 else "lowers" if term < 0 else "neutral",
            }
        )
    return out


def prediction_body(p: Prediction) -> dict[str, Any]:
    cs = p.contributions
    names, labels, values, units, terms = zip(*cs, strict=True) if cs else ((),) * 5
    return _body(
        p.model.kind.outcome,
        p.probability,
        _band(p.band),
        p.log_odds,
        p.baseline_log_odds,
        _contributions(names, labels, units, values, terms, range(len(cs))),
        p.derived,
        [{"path": w.path, "code": w.code, "message": w.message} for w in p.warnings],
        p.extrapolated,
    )


def column_bodies(model: LoadedModel, scores: ColumnScores) -> list[dict[str, Any] | None]:
    """prediction_body for every plain row of a column score (None for the others): the same
    keys, values and contribution order as the per-patient path gives the same patient
    (tests/api/test_predict.py compares every batch item with the single answer)."""
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
    return [
        _body(
            outcome,
            probability[i],
            bands[band[i]],
            log_odds[i],
            baseline,
            _contributions(names, labels, units, values[i], contributions[i], ranks[i]),
            dict(zip(derived_names, derived[i], strict=True)) if derived else {},
            [],
            False,  # a plain row lies inside the derivation range (core.columns checks it)
        )
        if plain
        else None
        for i, plain in enumerate(scores.plain.tolist())
    ]


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


def wants_fhir(req: Request) -> bool:
    """Accept: application/fhir+json (preferred over application/json) selects a RiskAssessment."""
    if "fhir" not in req.headers.get("Accept", ""):
        return False
    best = req.accept_mimetypes.best_match(["application/json", FHIR_JSON])
    return best == FHIR_JSON


def fhir_references(patient: Mapping[str, Any], prefix: str) -> tuple[str, str | None]:
    """(subject, encounter) for a RiskAssessment; raises InvalidInput when they are not FHIR
    references (R4 requires RiskAssessment.subject)."""
    errors = []
    subject = patient.get("patient_reference")
    if not isinstance(subject, str) or not is_subject_reference(subject):
        errors.append(
            FieldError(
                f"{prefix}patient_reference",
                "a FHIR answer (Accept: application/fhir+json) needs the patient as a FHIR "
                "reference (RiskAssessment.subject is required)",
                "fhir_reference",
                "Patient/<id> or Group/<id>",
            )
        )
    encounter = patient.get("encounter_reference")
    if encounter is not None and not ENCOUNTER_REFERENCE.match(encounter):
        errors.append(
            FieldError(
                f"{prefix}encounter_reference",
                "a FHIR answer needs the encounter as a FHIR reference",
                "fhir_reference",
                "Encounter/<id>",
            )
        )
    if errors:
        raise InvalidInput(f"{len(errors)} reference(s) cannot be used in a FHIR answer", errors)
    assert isinstance(subject, str)
    return subject, encounter


def model_ref(model: LoadedModel) -> dict[str, str]:
    return {"name": model.name, "version": model.version, "sha256": model.sha256}


def vary(response: Response) -> Response:
    """The answer depends on Accept (JSON or FHIR): caches must key on it."""
    response.headers.add("Vary", "Accept")
    return response


def create_predict_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("predict", __name__)
    registry, metrics, settings = deps.registry, deps.metrics, deps.settings
    scoring = deps.scoring
    # Metric labels stay bounded: a model name the registry knows, else "<unknown>".
    served = frozenset(s.name for s in registry.statuses)

    def count_rejections(name: str, errors: list[FieldError], omitted: int = 0) -> None:
        known = name if name in served else "<unknown>"
        # Omitted errors are always unknown members (service.api.strict's budget).
        fields = Counter({"<unknown>": omitted} if omitted else {})
        fields.update(
            (_INDEX.sub("", e.path) or "<body>") if e.rule != "unknown_field" else "<unknown>"
            for e in errors
        )
        for field, n in fields.items():
            metrics.observe_validation_error(known, field, n)

    def load(kind: ModelKind, name: str, payload: Any, batch: bool) -> dict[str, Any]:
        # A fully valid body takes the plain-check path; anything else goes to marshmallow,
        # which words every error (see service/api/v1/fastload.py).
        fast = fast_load(kind, payload, batch)
        if fast is not None:
            return fast
        schema = batch_schema(kind) if batch else patient_schema(kind)
        try:
            data: dict[str, Any] = strict_load(schema, payload)
        except ValidationError as exc:
            errors, omitted = flatten_errors(exc.messages)
            count_rejections(name, errors, omitted)
            raise InvalidInput(
                f"{len(errors) + omitted} field(s) do not match the request schema",
                errors,
                omitted,
            ) from None
        return data

    def score(model: LoadedModel, inputs: Mapping[str, Any], prefix: str) -> Prediction:
        try:
            return scoring.one(model, inputs)
        except InvalidInput as exc:
            exc.errors = [e.prefixed(prefix) for e in exc.errors]
            raise

    @bp.post("/v1/models/<name>/predict")
    def predict_one(name: str) -> Response:
        # Each use of a `request`/`g` proxy is a context lookup: resolve them once.
        req, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        ctx.model = name
        model = registry.get(name, requested_version(req))
        data = load(model.kind, name, read_json(req), batch=False)
        fhir = wants_fhir(req)
        if fhir:
            subject, encounter = fhir_references(data, "")
        try:
            p = score(model, data["inputs"], "inputs")
        except InvalidInput as exc:
            count_rejections(name, exc.errors)
            raise
        metrics.observe_patient(p)
        body = {"request_id": ctx.request_id, "model": model_ref(model), **prediction_body(p)}
        if fhir:
            resource = risk_assessment(
                body,
                body["model"],
                model.kind.name,
                subject,
                datetime.now(UTC),
                encounter=encounter,
                identifier=ctx.request_id,
            )
            return vary(json_response(resource, content_type=FHIR_JSON))
        for key in REFERENCES:
            if key in data:
                body[key] = data[key]
        return vary(json_response(body))

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
        fhir = wants_fhir(request)
        references: list[tuple[str, str | None]] = []
        if fhir:
            ref_errors: list[FieldError] = []
            for i, patient in enumerate(patients):
                try:
                    references.append(fhir_references(patient, f"patients.{i}."))
                except InvalidInput as exc:
                    ref_errors.extend(exc.errors)
            if ref_errors:
                raise InvalidInput(
                    f"{len(ref_errors)} reference(s) cannot be used in a FHIR answer", ref_errors
                )
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
        metrics.observe_batch(model, batch)
        ref = model_ref(model)
        if fhir:
            now = datetime.now(UTC)
            resources = [
                risk_assessment(
                    item,
                    ref,
                    model.kind.name,
                    subject,
                    now,
                    encounter=encounter,
                    identifier=f"{g.request_id}/{i}",
                )
                for i, (item, (subject, encounter)) in enumerate(
                    zip(bodies, references, strict=True)
                )
            ]
            return vary(json_response(collection(resources, now), content_type=FHIR_JSON))
        for patient, item in zip(patients, bodies, strict=True):
            for key in REFERENCES:
                if key in patient:
                    item[key] = patient[key]
        return vary(
            json_response({"request_id": g.request_id, "model": ref, "predictions": bodies})
        )

    return bp
