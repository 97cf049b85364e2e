"""The one scoring entry point the three protocols share (the JSON API, OIP and CDS Hooks).

Scoring binds the site's unit table once (create_app builds it from Settings) and offers:
- one(model, inputs): one patient's inputs mapping -> Prediction (raises InvalidInput);
- patients(model, [inputs, ...]): a batch of inputs mappings (the JSON batch);
- columns(model, {input: values}, {input: unit}): a batch given column by column (OIP tensors).
A batch is scored "columns first, then each remaining patient": rows that pass every rule
without a warning are scored as numpy columns (core.columns); every other row goes through one(),
which words every error and warning. Adapters only translate a Batch into their wire format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.core import columns as column_path
from service.core.columns import ColumnScores
from service.core.inputs import resolve
from service.core.predictor import Prediction, predict
from service.core.registry import LoadedModel
from service.core.units import DEFAULT_UNITS, UnitTable
from service.errors import FieldError, InvalidInput


@dataclass
class Batch:
    """A scored batch: each row is plain (in `columns`), predicted one by one, or refused."""

    n: int
    columns: ColumnScores | None
    """The column scores; only the rows where columns.plain holds are taken from it."""
    predictions: dict[int, Prediction] = field(default_factory=dict)
    """Rows scored one by one (they had a warning, or a form the column path does not take)."""
    errors: dict[int, list[FieldError]] = field(default_factory=dict)
    """Refused rows: the errors with paths inside that row's inputs (e.g. lactate_24h.unit)."""


@dataclass(frozen=True)
class Scoring:
    units: UnitTable = DEFAULT_UNITS

    def one(self, model: LoadedModel, inputs: Mapping[str, Any]) -> Prediction:
        return predict(model, resolve(model.kind, inputs, self.units))

    def patients(self, model: LoadedModel, patients: Sequence[Mapping[str, Any]]) -> Batch:
        scores = column_path.score_patients(model, patients, self.units)
        return self._rest(model, len(patients), scores, patients.__getitem__)

    def columns(
        self,
        model: LoadedModel,
        values: Mapping[str, Sequence[Any]],
        units: Mapping[str, str | None],
        n: int,
    ) -> Batch:
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
        scores = column_path.score_columns(model, arrays, units, self.units)

        def patient(i: int) -> dict[str, Any]:
            """Row i as an inputs mapping (quantities as {"value", "unit"})."""
            return {
                name: {"value": data[i], "unit": units[name]}
                if units[name] is not None
                else data[i]
                for name, data in values.items()
            }

        return self._rest(model, n, scores, patient)

    def _rest(
        self,
        model: LoadedModel,
        n: int,
        scores: ColumnScores | None,
        patient: Callable[[int], Mapping[str, Any]],
    ) -> Batch:
        """Columns first, then each remaining patient through one()."""
        batch = Batch(n, scores)
        rest = range(n) if scores is None else np.flatnonzero(~scores.plain).tolist()
        for i in rest:
            try:
                batch.predictions[i] = self.one(model, patient(i))
            except InvalidInput as exc:
                batch.errors[i] = exc.errors
        return batch
