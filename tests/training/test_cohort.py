"""A hospital CSV: checked with the service's own rules; a bad file is refused and nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from service.core.kinds import ICH, WEANING
from service.training.__main__ import main
from service.training.cohort import CohortError, read_csv, write_csv
from service.training.train import simulated_cohort


def _write(tmp_path: Path, kind, n: int = 300, seed: int = 5) -> Path:
    path = tmp_path / f"{kind.name}.csv"
    write_csv(simulated_cohort(kind, n, seed), path)
    return path


def _edit(path: Path, row: int, column: str, value: str | None) -> None:
    """Set (or with value=None, drop the whole column of) a cell; row is the 1-based data row."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index(column)
    if value is None:
        rows = [r[:col] + r[col + 1 :] for r in rows]
    else:
        rows[row][col] = value
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _refusal(path: Path, kind) -> CohortError:
    with pytest.raises(CohortError) as info:
        read_csv(kind, path)
    return info.value


def test_csv_round_trips_exactly(tmp_path):
    cohort = simulated_cohort(WEANING, 300, 5)
    path = tmp_path / "c.csv"
    write_csv(cohort, path)
    back = read_csv(WEANING, path)
    assert np.array_equal(back.features, cohort.features)
    assert np.array_equal(back.outcome, cohort.outcome)
    for name in ("etiology", "ecpr", "crrt"):
        assert np.array_equal(back.subgroups[name], cohort.subgroups[name])


def test_missing_column_is_named(tmp_path):
    path = _write(tmp_path, WEANING)
    _edit(path, 0, "lactate_24h", None)
    (err,) = _refusal(path, WEANING).errors
    assert (err.row, err.column, err.rule) == (None, "lactate_24h", "required_column")


def test_non_numeric_cell_names_row_column_and_rule(tmp_path):
    path = _write(tmp_path, WEANING)
    _edit(path, 7, "apache_ii", "twelve")
    (err,) = _refusal(path, WEANING).errors
    assert (err.row, err.column, err.rule) == (7, "apache_ii", "numeric")
    assert "row 7 (line 8), column 'apache_ii'" in str(err)


def test_the_line_named_counts_blank_lines(tmp_path):
    path = _write(tmp_path, WEANING)
    _edit(path, 7, "apache_ii", "twelve")
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(3, "\n")  # a blank line before data row 3: rows keep their numbers, lines move
    path.write_text("".join(lines))
    (err,) = _refusal(path, WEANING).errors
    assert (err.row, err.line) == (7, 9)
    assert "row 7 (line 9), column 'apache_ii'" in str(err)


def test_out_of_bounds_value_uses_the_service_bounds(tmp_path):
    path = _write(tmp_path, ICH)
    _edit(path, 3, "ffp_volume_ml", "25000")
    _edit(path, 9, "gwr", "0.5")
    errors = _refusal(path, ICH).errors
    assert [(e.row, e.column, e.rule) for e in errors] == [
        (3, "ffp_volume_ml", "range"),
        (9, "gwr", "range"),
    ]
    assert errors[0].allowed == "0 to 20000 mL"


def test_fractional_apache_and_zero_vis_are_refused_as_the_api_would(tmp_path):
    path = _write(tmp_path, WEANING)
    _edit(path, 2, "apache_ii", "12.5")
    _edit(path, 4, "vis_0h", "0")
    errors = _refusal(path, WEANING).errors
    assert {(e.row, e.column, e.rule) for e in errors} == {
        (2, "apache_ii", "integer"),
        (4, "vis_0h", "nonzero"),
    }


def test_bad_boolean_and_outcome_and_etiology(tmp_path):
    path = _write(tmp_path, ICH)
    _edit(path, 1, "stroke_history", "maybe")
    _edit(path, 2, "ich", "2")
    errors = _refusal(path, ICH).errors
    assert [(e.row, e.column, e.rule) for e in errors] == [
        (1, "stroke_history", "boolean"),
        (2, "ich", "binary"),
    ]
    wpath = _write(tmp_path, WEANING)
    _edit(wpath, 5, "etiology", "sepsis")
    (err,) = _refusal(wpath, WEANING).errors
    assert (err.row, err.column, err.rule) == (5, "etiology", "category")


def test_single_outcome_class_is_refused(tmp_path):
    path = tmp_path / "one_class.csv"
    path.write_text(
        "gwr,stroke_history,ffp_volume_ml,min_platelets,ich\n"
        + "".join(f"1.3,0,{100 * i},80,0\n" for i in range(30)),
        encoding="utf-8",
    )
    (err,) = _refusal(path, ICH).errors
    assert (err.column, err.rule) == ("ich", "two_classes")


def test_unknown_column_is_refused(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("gwr,stroke_history,ffp_volume_ml,min_platelets,ich,mrn\n", encoding="utf-8")
    (err,) = _refusal(path, ICH).errors
    assert (err.column, err.rule) == ("mrn", "unknown_column")


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("min_platelets", "abc", "column 'min_platelets'"),
        ("ffp_volume_ml", "-5", "rule: range"),
    ],
)
def test_command_refuses_a_bad_file_and_writes_nothing(tmp_path, capsys, column, value, needle):
    path = _write(tmp_path, ICH)
    _edit(path, 11, column, value)
    out = tmp_path / "models"
    assert main(["ich", "--data", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "row 11 (line 12)" in err and needle in err and "nothing was written" in err
    assert not out.exists()


def test_csv_without_subgroup_columns_reports_them_as_not_available(tmp_path, capsys):
    path = _write(tmp_path, WEANING, n=1200)
    for col in ("etiology", "ecpr", "crrt"):
        _edit(path, 0, col, None)
    out = tmp_path / "models"
    assert main(["weaning", "--data", str(path), "--out", str(out), "--bootstrap", "100"]) == 0
    doc = json.loads((out / "weaning" / "1.0.0" / "manifest.json").read_text())
    assert all(v.startswith("not available") for v in doc["metrics"]["subgroups"].values())
    assert doc["training"]["source"] == "csv"
    assert "not available" in (out / "weaning" / "1.0.0" / "MODEL_CARD.md").read_text()


def test_too_few_events_to_hold_any_out_is_refused(tmp_path, capsys):
    path = tmp_path / "two_events.csv"
    rows = [f"1.3,0,{10 * i},80,{1 if i < 2 else 0}\n" for i in range(40)]
    path.write_text("gwr,stroke_history,ffp_volume_ml,min_platelets,ich\n" + "".join(rows))
    out = tmp_path / "models"
    assert main(["ich", "--data", str(path), "--out", str(out)]) == 1
    assert "too_few_events" in capsys.readouterr().err
    assert not out.exists()
