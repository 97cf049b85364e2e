"""The column path gives the per-patient path's numbers, and leaves every row that has an error
or a warning to the per-patient path."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.core.columns import score_columns, score_patients
from service.core.inputs import resolve
from service.core.predictor import predict
from service.core.registry import LoadedModel, load_version
from service.errors import InvalidInput
from tests.factories import write_model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    root: Path = tmp_path_factory.mktemp("columns")
    return {k: load_version(write_model(root, k)) for k in ("weaning", "ich")}


def rows(kind: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Random patients, a good share of them at or beyond a bound, unusual, or extrapolated."""
    rnd = random.Random(seed)
    pick = rnd.choice
    if kind == "weaning":
        return [
            {
                "apache_ii": pick([0, 4, 5, 22, 50, 51, 71, 72, rnd.randint(5, 40), 20.5]),
                "vis_0h": pick([0.0, 1.0, 250.0, 251.0, 600.0, 601.0, rnd.uniform(1, 120)]),
                "vis_24h": pick([0.0, 250.0, 251.0, rnd.uniform(0, 100), rnd.uniform(0, 30)]),
                "lactate_24h": {
                    "value": pick([0.1, 0.05, 0.5, 20.0, 30.0, 31.0, rnd.uniform(0.5, 9)]),
                    "unit": "mmol/L",
                },
            }
            for _ in range(n)
        ]
    return [
        {
            "gwr": pick([0.8, 0.79, 1.0, 1.6, 1.61, 1.8, rnd.uniform(1.0, 1.5)]),
            "stroke_history": pick([True, False]),
            "ffp_volume": {
                "value": pick([0.0, 8000.0, 8001.0, 20000.0, rnd.uniform(0, 2000)]),
                "unit": "mL",
            },
            "min_platelets": {
                "value": pick([0.0, 4.0, 5.0, 600.0, 601.0, rnd.uniform(10, 300)]),
                "unit": "10*9/L",
            },
        }
        for _ in range(n)
    ]


def as_columns(kind: str, patients: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {
        "weaning": ("apache_ii", "vis_0h", "vis_24h", "lactate_24h"),
        "ich": ("gwr", "stroke_history", "ffp_volume", "min_platelets"),
    }[kind]
    columns, units = {}, {}
    for name in names:
        values = [p[name] for p in patients]
        if isinstance(values[0], dict):
            units[name] = values[0]["unit"]
            values = [v["value"] for v in values]
        else:
            units[name] = None
        columns[name] = np.asarray(values, dtype=np.float64)
    return columns, units


@pytest.mark.parametrize("kind", ["weaning", "ich"])
def test_plain_rows_match_the_per_patient_path_and_the_rest_are_left_to_it(
    models: dict[str, LoadedModel], kind: str
) -> None:
    model = models[kind]
    patients = rows(kind, 2000, seed=11)
    columns, units = as_columns(kind, patients)
    scores = score_columns(model, columns, units)
    assert scores is not None
    plain = 0
    for i, inputs in enumerate(patients):
        try:
            p = predict(model, resolve(model.kind, inputs))
        except InvalidInput:
            assert not scores.plain[i], f"row {i} has an error but was scored as a column"
            continue
        if p.warnings:
            assert not scores.plain[i], f"row {i} has warnings but was scored as a column"
            continue
        assert scores.plain[i], f"row {i} is plain but was left to the per-patient path"
        plain += 1
        # Bit for bit: the V2 and JSON APIs must give one patient the same numbers.
        assert float(scores.probability[i]) == p.probability
        assert float(scores.log_odds[i]) == p.log_odds
        by_feature = {c.feature: c.log_odds for c in p.contributions}
        names = [f.name for f in model.manifest.features]
        assert scores.contributions[i].tolist() == [by_feature[n] for n in names]
        assert model.manifest.risk_bands[int(scores.band[i])] == p.band
    assert 20 <= plain < 2000  # both kinds of row were exercised


def test_a_unit_the_column_path_cannot_convert_returns_none(models: dict[str, LoadedModel]) -> None:
    columns, units = as_columns("weaning", rows("weaning", 5, seed=1))
    assert score_columns(models["weaning"], columns, {**units, "lactate_24h": "mmol"}) is None
    assert score_columns(models["weaning"], columns, {**units, "lactate_24h": "mg/dL"}) is not None


@pytest.mark.parametrize("kind", ["weaning", "ich"])
def test_patient_mappings_score_as_their_columns_do(
    models: dict[str, LoadedModel], kind: str
) -> None:
    patients = rows(kind, 300, seed=3)
    columns, units = as_columns(kind, patients)
    by_column = score_columns(models[kind], columns, units)
    by_patient = score_patients(models[kind], patients)
    assert by_column is not None
    assert by_patient.plain.tolist() == by_column.plain.tolist()
    plain = by_patient.plain
    assert by_patient.probability[plain].tolist() == by_column.probability[plain].tolist()
    assert by_patient.contributions[plain].tolist() == by_column.contributions[plain].tolist()


def test_a_patient_in_another_form_or_unit_is_left_to_the_per_patient_path(
    models: dict[str, LoadedModel],
) -> None:
    plain = rows("weaning", 1, seed=0)[0] | {
        "apache_ii": 20,
        "vis_0h": 40.0,
        "vis_24h": 12.0,
        "lactate_24h": {"value": 2.8, "unit": "mmol/L"},
    }
    patients = [
        plain,
        plain | {"lactate_24h": {"value": 25.2, "unit": "mg/dL"}},
        plain | {"lactate_24h": {"value": 2.8, "unit": "mmol"}},  # not a unit: per patient
        plain | {"body_weight": {"value": 80, "unit": "kg"}},
        {k: v for k, v in plain.items() if k != "vis_24h"}
        | {"infusions_24h": {"dopamine": {"value": 5, "unit": "ug/kg/min"}}},
    ]
    assert score_patients(models["weaning"], patients).plain.tolist() == [
        True,
        True,
        False,
        False,
        False,
    ]
