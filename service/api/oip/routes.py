"""Open Inference Protocol (KServe V2) REST face, for internal services and ML platforms.

Endpoints: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/<name>[/versions/<v>],
.../ready, POST .../infer. One named 1-D input per clinical input (shape [n] or [n, 1], one
patient per row), in the same canonical names as the JSON API. A quantity that has alternative
units must say its unit in the input's `parameters.unit` (the same whitelist as the JSON API);
nothing is assumed. Outputs: probability, log_odds, baseline_log_odds (FP64 [n]), contributions
(FP64 [n, features]), risk_band and warnings (BYTES [n]; warnings are JSON strings), extrapolated (BOOL [n]). Rows that pass
every rule without a warning are scored as numpy columns; the others go through the same
per-patient path as the JSON API, which words every error and warning (core.scoring). Errors
keep the service's one problem+json shape and add the OIP `error` member, so V2 clients find
their message.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flask import Blueprint, Response, g, request
from marshmallow import ValidationError

from service import __version__
from service.api.body import read_json
from service.api.deps import Deps
from service.api.errors import PROBLEM_JSON, flatten_errors, problem
from service.api.oip.tensors import (
    INFERENCE_REQUEST,
    OUTPUTS,
    tensor_path,
    tensors,
    tensors_to_columns,
)
from service.api.responses import json_response
from service.api.strict import load as strict_load
from service.core.registry import LoadedModel
from service.errors import FieldError, InvalidInput, ModelNotReady

SERVER_NAME = "ecmo-risk-service"


def create_oip_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("oip", __name__)
    registry, metrics, settings = deps.registry, deps.metrics, deps.settings
    scoring = deps.scoring

    @bp.after_app_request
    def _add_error_member(response: Response) -> Response:
        """OIP clients read `error`; the body keeps the one problem+json shape besides.

        App-wide, so that a /v2 path no route matches (a 404 outside this blueprint) has it too.
        """
        if response.mimetype == PROBLEM_JSON and request.path.startswith("/v2"):
            body = json.loads(response.get_data())
            body["error"] = body["detail"]
            response.set_data(json.dumps(body))
        return response

    @bp.get("/v2")
    def server_metadata() -> Response:
        return json_response({"name": SERVER_NAME, "version": __version__, "extensions": []})

    @bp.get("/v2/health/live")
    def live() -> Response:
        return json_response({"live": True})

    @bp.get("/v2/health/ready")
    def ready() -> Response:
        if registry.ready:
            return json_response({"ready": True})
        detail = "; ".join(registry.not_ready_reasons())
        return problem(503, "not_ready", "Service not ready", detail, ready=False)

    def metadata(model: LoadedModel) -> dict[str, Any]:
        inputs = []
        for name, (field, needs_unit, datatypes) in tensors(model.kind).items():
            rule = field.rule
            params: dict[str, Any] = {"description": field.description}
            if needs_unit and rule:
                params["unit"] = f"required: {rule.unit} or an accepted alternative"
            inputs.append(
                {
                    "name": name,
                    "datatype": datatypes[-1] if datatypes != ("BOOL",) else "BOOL",
                    "shape": [-1],
                    "parameters": params,
                }
            )
        versions = sorted(s.version for s in registry.statuses if s.name == model.name)
        return {
            "name": model.name,
            "versions": versions,
            "platform": "scikit-learn",
            "inputs": inputs,
            "outputs": [
                {"name": n, "datatype": d, "shape": [-1], "parameters": {"description": text}}
                for n, (d, text) in OUTPUTS.items()
            ],
        }

    @bp.get("/v2/models/<name>")
    @bp.get("/v2/models/<name>/versions/<model_version>")
    def model_metadata(name: str, model_version: str | None = None) -> Response:
        return json_response(metadata(registry.get(name, model_version)))

    @bp.get("/v2/models/<name>/ready")
    @bp.get("/v2/models/<name>/versions/<model_version>/ready")
    def model_ready(name: str, model_version: str | None = None) -> Response:
        try:
            model = registry.get(name, model_version)
        except ModelNotReady as exc:
            return problem(503, exc.code, exc.title, exc.detail, name=name, ready=False)
        return json_response({"name": model.name, "ready": True})

    @bp.post("/v2/models/<name>/infer")
    @bp.post("/v2/models/<name>/versions/<model_version>/infer")
    def infer(name: str, model_version: str | None = None) -> Response:
        g.model = name
        model = registry.get(name, model_version)
        try:
            req: dict[str, Any] = strict_load(
                INFERENCE_REQUEST, read_json(request, untyped_is_json=True)
            )
        except ValidationError as exc:
            found, omitted = flatten_errors(exc.messages)
            raise InvalidInput(
                "the inference request does not match the protocol", found, omitted
            ) from None
        cols = tensors_to_columns(
            model.kind, req["inputs"], settings.max_batch, req.get("parameters")
        )
        n = cols.n
        batch = scoring.columns(model, cols.values, cols.units, n)
        scores = batch.columns
        features = [f.name for f in model.manifest.features]
        bands = model.manifest.risk_bands
        if scores is None:
            probability, log_odds = np.zeros(n), np.zeros(n)
            contributions, band = np.zeros((n, len(features))), np.zeros(n, dtype=np.int64)
        else:
            probability, log_odds = scores.probability, scores.log_odds
            contributions, band = scores.contributions, scores.band
        errors = [
            FieldError(
                tensor_path(cols.position, i, e.path),
                f"patient {i}: {e.message}",
                e.rule,
                e.allowed,
            )
            for i, row_errors in batch.errors.items()
            for e in row_errors
        ]
        # Rows with a warning (or a form the column path does not take) were scored one by one.
        warnings = ["[]"] * n
        extrapolated = [False] * n  # plain rows lie inside the derivation range
        for i, p in batch.predictions.items():
            extrapolated[i] = p.extrapolated
            probability[i], log_odds[i] = p.probability, p.log_odds
            by_feature = {c.feature: c.log_odds for c in p.contributions}
            contributions[i] = [by_feature[f] for f in features]
            band[i] = bands.index(p.band)
            warnings[i] = json.dumps(
                [{"path": w.path, "code": w.code, "message": w.message} for w in p.warnings]
            )
        if errors:
            raise InvalidInput(f"{len(errors)} value(s) are not acceptable", errors)
        band_names = [bands[b].name for b in band.tolist()]
        probabilities = probability.tolist()
        metrics.observe_batch(model, batch)
        values: dict[str, list[Any]] = {
            "probability": probabilities,
            "log_odds": log_odds.tolist(),
            "baseline_log_odds": [model.linear.baseline] * n,
            "risk_band": band_names,
            "contributions": contributions.ravel().tolist(),
            "warnings": warnings,
            "extrapolated": extrapolated,
        }
        wanted = [o["name"] for o in req.get("outputs", [])] or list(OUTPUTS)
        body: dict[str, Any] = {
            "model_name": model.name,
            "model_version": model.version,
            "id": req.get("id", g.request_id),
            "parameters": {"sha256": model.sha256},
            "outputs": [
                {"name": o, "datatype": OUTPUTS[o][0], "shape": [n], "data": values[o]}
                if o != "contributions"
                else {
                    "name": o,
                    "datatype": "FP64",
                    "shape": [n, len(features)],
                    "parameters": {"features": features},
                    "data": values[o],
                }
                for o in wanted
            ],
        }
        return json_response(body)

    return bp
