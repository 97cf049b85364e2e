"""Open Inference Protocol (KServe V2) wire format: the request schema, the tensor names per model
kind, the outputs, and the checks that turn input tensors into one column per JSON-API input."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from marshmallow import fields, validate
from werkzeug.exceptions import RequestEntityTooLarge

from service.api.errors import with_field_error
from service.api.strict import BoundedList, StrictSchema
from service.core.kinds.base import InputField, ModelKind
from service.errors import FieldError, InvalidInput

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


class TensorSpec(NamedTuple):
    field: InputField
    needs_unit: bool
    datatypes: tuple[str, ...]


def tensors(kind: ModelKind) -> dict[str, TensorSpec]:
    """The kind's input tensors: one per input of its column form, named as the JSON API's."""
    out: dict[str, TensorSpec] = {}
    for name in kind.column_form:
        f = kind.input(name)
        datatypes = ("BOOL",) if f.type == "boolean" else NUMERIC
        out[name] = TensorSpec(f, f.type == "quantity", datatypes)
    return out


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
    "extrapolated": (
        "BOOL",
        "true when an input lay outside the derivation cohort's range: it was scored at the edge "
        "of that range and the estimate is an extrapolation",
    ),
}


_Strict = StrictSchema
# No model takes more inputs than this, and there are fewer outputs: a longer list is refused
# before its items are validated.
MAX_TENSORS = 16


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
    inputs = BoundedList(
        fields.Nested(TensorSchema),
        max_items=MAX_TENSORS,
        required=True,
        validate=validate.Length(min=1),
    )
    outputs = BoundedList(fields.Nested(RequestedOutputSchema), max_items=MAX_TENSORS)


INFERENCE_REQUEST = InferenceRequestSchema()


def _column(data: list[Any]) -> list[Any] | int:
    """The values of an [n, 1] tensor, whose data may come flat (row-major, as the protocol
    writes it) or nested exactly as the shape: n rows of one value each. Anything else (a row
    of two values, a value nested deeper) is the index of the first row that breaks the shape."""
    if not any(type(row) is list for row in data):
        return data
    values = []
    for i, row in enumerate(data):
        if type(row) is not list or len(row) != 1 or type(row[0]) is list:
            return i
        values.append(row[0])
    return values


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


def request_unit_key(name: str) -> str:
    """The request-level parameter that carries an input's unit: `<input>.unit`.

    Per-input `parameters` are in the protocol, but the official Triton HTTP client can only set
    the request's `parameters`, so a unit may be given there too.
    """
    return f"{name}.unit"


def tensors_to_columns(
    kind: ModelKind,
    given: list[dict[str, Any]],
    max_batch: int,
    request_parameters: dict[str, Any] | None = None,
) -> Columns:
    """Validate the input tensors (names, datatypes, shapes, elements, units)."""
    spec = tensors(kind)
    request_parameters = request_parameters or {}
    errors: list[FieldError] = []
    columns: dict[str, tuple[int, list[Any], str | None]] = {}
    for k, t in enumerate(given):
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
        # [n, 1] arrives flat or nested as its shape; a [n] tensor with a nested element fails
        # the element check.
        data = _column(t["data"]) if len(shape) == 2 else t["data"]
        if isinstance(data, int):
            errors.append(
                FieldError(
                    f"{where}.data.{data}",
                    f"nesting does not match shape {shape}: each row is one value, [x]",
                    "shape",
                    "flat values, or rows of exactly one value",
                )
            )
            continue
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
        in_request = request_parameters.get(request_unit_key(name))
        if in_request is not None and unit is not None and in_request != unit:
            errors.append(
                FieldError(
                    f"parameters.{request_unit_key(name)}",
                    f"{name}'s unit is {unit!r} in the input and {in_request!r} in the request",
                    "conflict",
                    "one unit, in inputs[].parameters.unit or parameters.<input>.unit",
                )
            )
            continue
        unit = unit if unit is not None else in_request
        if needs_unit and not isinstance(unit, str):
            rule = spec[name].field.rule
            assert rule is not None  # a quantity has a rule
            errors.append(
                FieldError(
                    f"{where}.parameters.unit",
                    f"{name} needs parameters.unit (or the request's parameters.{name}.unit)",
                    "required",
                    f"a unit, canonical {rule.unit}",
                )
            )
            continue
        columns[name] = (k, data, unit if needs_unit else None)
    missing = [n for n in spec if n not in columns and not any(t["name"] == n for t in given)]
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
        values={name: data for name, (_, data, _) in columns.items()},
        units={name: unit for name, (_, _, unit) in columns.items()},
        position={name: k for name, (k, _, _) in columns.items()},
        n=n,
    )


def tensor_path(columns: dict[str, int], patient: int, path: str) -> str:
    """Map a JSON-API field path of patient i to the tensor element it came from."""
    head, _, rest = path.partition(".")
    k = columns.get(head)
    if k is None:
        return f"inputs (patient {patient}): {path}"
    if rest == "unit":
        return f"inputs.{k}.parameters.unit"
    return f"inputs.{k}.data.{patient}"
