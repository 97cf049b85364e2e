"""Open Inference Protocol (KServe V2) REST face, for internal services and ML platforms.

Endpoints: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/<name>[/versions/<v>],
.../ready, POST .../infer. One named 1-D input per clinical input (shape [n] or [n, 1], one
patient per row), in the same canonical names as the JSON API. A quantity that has alternative
units must say its unit in the input's `parameters.unit` (the same whitelist as the JSON API);
nothing is assumed. Outputs: probability, log_odds, baseline_log_odds (FP64 [n]), contributions
(FP64 [n, features]), risk_band and warnings (BYTES [n]; warnings are JSON strings). Rows that pass
every rule without a warning are scored as numpy columns (core.columns); the others go through
the same per-patient path as the JSON API, which words every error and warning. Errors keep the service's one
problem+json shape and add the OIP `error` member, so V2 clients find their message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Blueprint, Response, g, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.exceptions import RequestEntityTooLarge

from service import __version__
from service.api.body import read_json
from service.api.deps import Deps
from service.api.errors import PROBLEM_JSON, problem, with_field_error
from service.api.responses import json_response
from service.api.schemas import flatten_errors
from service.core.columns import score_columns
from service.core.inputs import resolve
from service.core.predictor import predict
from service.core.registry import LoadedModel
from service.core.specs import INPUT_RULES
from service.errors import FieldError, InvalidInput, ModelNotReady

SERVER_NAME = "ecmo-risk-service"
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
NUMERIC = DATATYPES[1:12]

# Tensor name -> (JSON API input, needs a unit, datatypes accepted)
TENSORS: dict[str, dict[str, tuple[str, bool, tuple[str, ...]]]] = {
    "weaning": {
        "apache_ii": ("apache_ii", False, NUMERIC),
        "vis_0h": ("vis_0h", False, NUMERIC),
        "vis_24h": ("vis_24h", False, NUMERIC),
        "lactate_24h": ("lactate_24h", True, NUMERIC),
    },
    "ich": {
        "gwr": ("gwr", False, NUMERIC),
        "stroke_history": ("stroke_history", False, ("BOOL",)),
        "ffp_volume": ("ffp_volume", True, NUMERIC),
        "min_platelets": ("min_platelets", True, NUMERIC),
    },
}
OUTPUTS = {
    "probability": ("FP64", "predicted probability of the model's outcome"),
    "log_odds": ("FP64", "log-odds = baseline_log_odds + sum of contributions"),
    "baseline_log_odds": ("FP64", "log-odds of the derivation cohort's average patient"),
    "risk_band": ("BYTES", "risk band name from the model's manifest"),
    "contributions": (
        "FP64",
        "log-odds contribution of each feature, shape [n, features], in the order given by the "
        "output's parameters.features (the manifest's feature order)",
    ),
    "warnings": (
        "BYTES",
        "JSON list of {path, code, message} per patient: values outside the usual range, "
        "extrapolation beyond the derivation cohort (usually [])",
    ),
}


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class TensorSchema(_Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    shape = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0)),
        required=True,
        validate=validate.Length(min=1, max=2),
    )
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPES))
    parameters = fields.Dict(keys=fields.String(), values=fields.Raw())
    # Checked element by element in tensors_to_columns; a List(Raw) field costs ~1 us per element.
    data = fields.Raw(required=True)


class RequestedOutputSchema(_Strict):
    name = fields.String(required=True, validate=validate.OneOf(list(OUTPUTS)))
    parameters = fields.Dict(keys=fields.String(), values=fields.Raw())


class InferenceRequestSchema(_Strict):
    id = fields.String(validate=validate.Length(max=256))
    parameters = fields.Dict(keys=fields.String(), values=fields.Raw())
    inputs = fields.List(
        fields.Nested(TensorSchema), required=True, validate=validate.Length(min=1)
    )
    outputs = fields.List(fields.Nested(RequestedOutputSchema))


INFERENCE_REQUEST = InferenceRequestSchema()


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def _bad_elements(data: list[Any], datatype: str) -> list[int]:
    """Indices of elements that are not valid for the datatype (usually none: checked fast)."""
    if datatype != "BOOL" and all(type(v) is float or type(v) is int for v in data):
        array = np.asarray(data, dtype=np.float64)
        if datatype.startswith(("INT", "UINT")):
            ok = np.isfinite(array) & (array == np.floor(array))
        else:
            ok = np.isfinite(array)
        if ok.all():
            return []
    return [i for i, v in enumerate(data) if not _element_ok(v, datatype)]


def _element_ok(value: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if datatype.startswith(("INT", "UINT")):
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return not isinstance(value, float) or math.isfinite(value)


@dataclass(frozen=True)
class Columns:
    """Validated input tensors: one list of values per JSON-API input, its unit, and where it was."""

    values: dict[str, list[Any]]
    units: dict[str, str | None]
    position: dict[str, int]
    n: int

    def patient(self, i: int) -> dict[str, Any]:
        """Row i as the JSON API's inputs mapping (for the per-patient path)."""
        return {
            name: {"value": data[i], "unit": self.units[name]}
            if self.units[name] is not None
            else data[i]
            for name, data in self.values.items()
        }


def tensors_to_columns(kind: str, tensors: list[dict[str, Any]], max_batch: int) -> Columns:
    """Validate the input tensors (names, datatypes, shapes, elements, units)."""
    spec = TENSORS[kind]
    errors: list[FieldError] = []
    columns: dict[str, tuple[int, list[Any], str | None]] = {}
    for k, t in enumerate(tensors):
        where = f"inputs.{k}"
        name = t["name"]
        if name not in spec:
            errors.append(
                FieldError(
                    f"{where}.name", f"unknown input {name!r}", "unknown_field", ", ".join(spec)
                )
            )
            continue
        if name in columns:
            errors.append(
                FieldError(f"{where}.name", f"input {name!r} given twice", "duplicate_key")
            )
            continue
        _, needs_unit, datatypes = spec[name]
        if t["datatype"] not in datatypes:
            errors.append(
                FieldError(
                    f"{where}.datatype",
                    f"{name} cannot be {t['datatype']}",
                    "datatype",
                    ", ".join(datatypes),
                )
            )
            continue
        shape = t["shape"]
        if len(shape) == 2 and shape[1] != 1:
            errors.append(
                FieldError(
                    f"{where}.shape",
                    "one value per patient: shape [n] or [n, 1]",
                    "shape",
                    "[n] or [n, 1]",
                )
            )
            continue
        if not isinstance(t["data"], list):
            errors.append(FieldError(f"{where}.data", "not a JSON array", "type", "a JSON array"))
            continue
        # [n, 1] arrives nested; a [n] tensor with a nested element fails the element check.
        data = _flatten(t["data"]) if len(shape) == 2 else t["data"]
        if len(data) != shape[0]:
            errors.append(
                FieldError(
                    f"{where}.data",
                    f"{len(data)} values for shape {shape}",
                    "shape",
                    f"{shape[0]} values",
                )
            )
            continue
        bad = _bad_elements(data, t["datatype"])
        if bad:
            errors.append(
                FieldError(
                    f"{where}.data.{bad[0]}",
                    f"not a valid {t['datatype']} value ({len(bad)} such)",
                    "type",
                    "finite JSON numbers" if t["datatype"] != "BOOL" else "true or false",
                )
            )
            continue
        unit = (t.get("parameters") or {}).get("unit")
        if needs_unit and not isinstance(unit, str):
            rule = INPUT_RULES[spec[name][0]]
            errors.append(
                FieldError(
                    f"{where}.parameters.unit",
                    f"{name} needs parameters.unit",
                    "required",
                    f"a unit, canonical {rule.unit}",
                )
            )
            continue
        columns[name] = (k, data, unit if needs_unit else None)
    missing = [n for n in spec if n not in columns and not any(t["name"] == n for t in tensors)]
    for name in missing:
        errors.append(
            FieldError("inputs", f"input {name!r} is missing", "required", ", ".join(spec))
        )
    lengths = {len(data) for _, data, _ in columns.values()}
    if not errors and len(lengths) > 1:
        errors.append(
            FieldError(
                "inputs",
                "inputs have different numbers of patients",
                "shape",
                "the same n for every input",
            )
        )
    if errors:
        raise InvalidInput(f"{len(errors)} input tensor(s) are not acceptable", errors)
    n = lengths.pop() if lengths else 0
    if n > max_batch:
        raise with_field_error(
            RequestEntityTooLarge(f"at most {max_batch} patients per request (got {n})"),
            FieldError("inputs", f"{n} patients", "max_items", f"1 to {max_batch} patients"),
        )
    if n == 0:
        raise InvalidInput(
            "no patients", [FieldError("inputs", "shape [0]", "shape", "at least 1 patient")]
        )
    return Columns(
        values={spec[name][0]: data for name, (_, data, _) in columns.items()},
        units={spec[name][0]: unit for name, (_, _, unit) in columns.items()},
        position={name: k for name, (k, _, _) in columns.items()},
        n=n,
    )


def _tensor_path(columns: dict[str, int], patient: int, path: str) -> str:
    """Map a JSON-API field path of patient i to the tensor element it came from."""
    head, _, rest = path.partition(".")
    k = columns.get(head)
    if k is None:
        return f"inputs (patient {patient}): {path}"
    if rest == "unit":
        return f"inputs.{k}.parameters.unit"
    return f"inputs.{k}.data.{patient}"


def create_oip_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("oip", __name__)
    registry, metrics, settings = deps.registry, deps.metrics, deps.settings

    @bp.after_request
    def _add_error_member(response: Response) -> Response:
        """OIP clients read `error`; the body keeps the one problem+json shape besides."""
        if response.mimetype == PROBLEM_JSON:
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
        spec = TENSORS[model.kind.name]
        inputs = []
        for name, (field, needs_unit, datatypes) in spec.items():
            rule = INPUT_RULES.get(field)
            label = rule.label if rule else "history of stroke (true/false)"
            params: dict[str, Any] = {"description": label}
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
            req: dict[str, Any] = INFERENCE_REQUEST.load(read_json(request))
        except ValidationError as exc:
            raise InvalidInput(
                "the inference request does not match the protocol", flatten_errors(exc.messages)
            ) from None
        cols = tensors_to_columns(model.kind.name, req["inputs"], settings.max_batch)
        n = cols.n
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in cols.values.items()}
        scores = score_columns(model, arrays, cols.units, settings.ffp_ml_per_unit)
        features = [f.name for f in model.manifest.features]
        bands = model.manifest.risk_bands
        if scores is None:
            probability, log_odds = np.zeros(n), np.zeros(n)
            contributions, band = np.zeros((n, len(features))), np.zeros(n, dtype=np.int64)
            per_patient = list(range(n))
        else:
            probability, log_odds = scores.probability, scores.log_odds
            contributions, band = scores.contributions, scores.band
            per_patient = np.flatnonzero(~scores.plain).tolist()
        # Rows with an error or a warning take the per-patient path, which words them.
        warnings = ["[]"] * n
        errors: list[FieldError] = []
        for i in per_patient:
            try:
                p = predict(model, resolve(model.kind, cols.patient(i), settings.ffp_ml_per_unit))
            except InvalidInput as exc:
                errors.extend(
                    FieldError(
                        _tensor_path(cols.position, i, e.path),
                        f"patient {i}: {e.message}",
                        e.rule,
                        e.allowed,
                    )
                    for e in exc.errors
                )
                continue
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
        metrics.observe_predictions(model.name, model.version, band_names, probabilities)
        values: dict[str, list[Any]] = {
            "probability": probabilities,
            "log_odds": log_odds.tolist(),
            "baseline_log_odds": [model.linear.baseline] * n,
            "risk_band": band_names,
            "contributions": contributions.ravel().tolist(),
            "warnings": warnings,
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
