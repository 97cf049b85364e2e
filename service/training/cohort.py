"""A training cohort in canonical units, checked row by row with the service's own rules.

Both sources end here: the simulated cohort and a hospital's CSV become the same columns
(ModelKind.csv_columns + the outcome + optional subgroup columns), and every row is turned into the
model's feature vector by service.core.inputs.resolve, the function the HTTP API uses. So a value
the service would refuse can never be trained on, VRR is derived and winsorised in exactly one
place, and `--data` on a CSV written by `--simulate --write-csv` trains the same model.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.inputs import resolve
from service.core.kinds.base import ModelKind
from service.errors import InvalidInput
from service.training import kinds
from service.training.kinds.base import FloatArray, IntArray

__all__ = ["FloatArray", "IntArray"]

_BOOLEAN_TRUE = {"1", "true", "yes"}
_BOOLEAN_FALSE = {"0", "false", "no"}
_MAX_REPORTED = 20


@dataclass(frozen=True)
class RowError:
    """One refused cell: 1-based data row (None for a file-level problem), column, rule."""

    row: int | None
    column: str
    rule: str
    message: str
    allowed: str | None = None
    line: int | None = None
    """The file line the row ends on (blank lines and quoted line breaks counted)."""

    def __str__(self) -> str:
        line = self.line if self.line is not None else (self.row or 0) + 1
        where = "file" if self.row is None else f"row {self.row} (line {line})"
        allowed = f"; allowed: {self.allowed}" if self.allowed else ""
        return f"{where}, column {self.column!r}: {self.message} [rule: {self.rule}{allowed}]"


class CohortError(Exception):
    """The cohort cannot be trained on; `errors` names every refused row, column and rule."""

    def __init__(self, source: str, errors: list[RowError]) -> None:
        self.source = source
        self.errors = errors
        shown = [f"  {e}" for e in errors[:_MAX_REPORTED]]
        more = len(errors) - _MAX_REPORTED
        if more > 0:
            shown.append(f"  ... and {more} more")
        super().__init__(
            f"{source}: {len(errors)} problem(s); nothing was written\n" + "\n".join(shown)
        )


@dataclass(frozen=True)
class Cohort:
    kind: ModelKind
    columns: dict[str, FloatArray]
    """ModelKind.csv_columns in canonical units (booleans as 0.0/1.0)."""
    outcome: IntArray
    features: FloatArray
    """(n, len(kind.features)): resolve()'s feature vectors, in the manifest's order."""
    subgroups: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    """The kind's optional subgroup columns the source had (categories as str, flags as 0/1)."""

    @property
    def n(self) -> int:
        return int(self.outcome.shape[0])


def api_inputs(kind: ModelKind, row: Mapping[str, float]) -> dict[str, Any]:
    """One CSV row (canonical units) in the shape the HTTP API accepts."""
    return kinds.of(kind).api_inputs(row)


_API_TO_COLUMN = {"ffp_volume": "ffp_volume_ml"}


def _column_of(path: str) -> str:
    head = path.split(".", 1)[0]
    return _API_TO_COLUMN.get(head, head)


def resolve_rows(
    kind: ModelKind, columns: Mapping[str, FloatArray], skip: Iterable[int] = ()
) -> tuple[FloatArray, list[RowError]]:
    """Resolve every row through the service's input rules; errors carry 1-based row numbers."""
    n = len(next(iter(columns.values())))
    skipped = set(skip)
    out = np.full((n, len(kind.features)), np.nan)
    errors: list[RowError] = []
    to_api = kinds.of(kind).api_inputs
    for i in range(n):
        if i in skipped:
            continue
        row = {c: float(columns[c][i]) for c in kind.csv_columns}
        try:
            resolved = resolve(kind, to_api(row))
        except InvalidInput as exc:
            errors.extend(
                RowError(i + 1, _column_of(e.path), e.rule, e.message, e.allowed)
                for e in exc.errors
            )
            continue
        out[i] = resolved.features
    return out, errors


def build(
    kind: ModelKind,
    columns: Mapping[str, FloatArray],
    outcome: IntArray,
    subgroups: Mapping[str, npt.NDArray[Any]] | None = None,
    source: str = "cohort",
) -> Cohort:
    features, errors = resolve_rows(kind, columns)
    if errors:
        raise CohortError(source, errors)
    cohort = Cohort(kind, dict(columns), outcome, features, dict(subgroups or {}))
    check_outcome(cohort, source)
    return cohort


def check_outcome(cohort: Cohort, source: str) -> None:
    classes = set(np.unique(cohort.outcome).tolist())
    if classes != {0, 1}:
        raise CohortError(
            source,
            [
                RowError(
                    None,
                    cohort.kind.outcome_column,
                    "two_classes",
                    f"the outcome has only the value(s) {sorted(classes)}: "
                    "a model needs both events (1) and non-events (0)",
                    "0 and 1, both present",
                )
            ],
        )


# -- CSV ------------------------------------------------------------------------------------------


def csv_header(kind: ModelKind, subgroups: Iterable[str] = ()) -> list[str]:
    return [*kind.csv_columns, kind.outcome_column, *subgroups]


def _formatter(kind: ModelKind) -> Any:
    tk = kinds.of(kind)
    categorical = {s.column for s in tk.subgroups if not s.boolean}
    whole = {*tk.integer_columns, *tk.boolean_columns, kind.outcome_column}
    whole |= {s.column for s in tk.subgroups if s.boolean}

    def fmt(column: str, value: Any) -> str:
        if column in categorical:
            return str(value)
        if column in whole:
            return str(int(value))
        return repr(float(value))  # repr round-trips a float exactly

    return fmt


def write_csv(cohort: Cohort, path: Path) -> None:
    tk = kinds.of(cohort.kind)
    subgroups = [c for c in tk.subgroup_columns if c in cohort.subgroups]
    header = csv_header(cohort.kind, subgroups)
    _format = _formatter(cohort.kind)
    data: dict[str, npt.NDArray[Any]] = {
        **cohort.columns,
        cohort.kind.outcome_column: cohort.outcome,
        **cohort.subgroups,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i in range(cohort.n):
            writer.writerow([_format(c, data[c][i]) for c in header])


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def _parse_cell(column: str, kind: ModelKind, text: str, row: int, errors: list[RowError]) -> Any:
    """Parse one cell; on failure record a RowError and return None."""
    tk = kinds.of(kind)
    text = text.strip()
    if text == "":
        errors.append(RowError(row, column, "required", "the cell is empty"))
        return None
    subgroup = next((s for s in tk.subgroups if s.column == column), None)
    if column in tk.boolean_columns or (subgroup is not None and subgroup.boolean):
        low = text.lower()
        if low in _BOOLEAN_TRUE:
            return 1.0
        if low in _BOOLEAN_FALSE:
            return 0.0
        errors.append(
            RowError(
                row, column, "boolean", f"{text!r} is not yes/no", "0, 1, true, false, yes, no"
            )
        )
        return None
    if subgroup is not None:
        for name in subgroup.categories:
            if text.lower() == name.lower():
                return name
        errors.append(
            RowError(
                row,
                column,
                "category",
                f"{text!r} is not a known {column}",
                ", ".join(subgroup.categories),
            )
        )
        return None
    value = _parse_number(text)
    if value is None:
        errors.append(RowError(row, column, "numeric", f"{text!r} is not a number"))
        return None
    if not math.isfinite(value):
        errors.append(RowError(row, column, "finite", f"{text!r} is not a finite number"))
        return None
    if column == kind.outcome_column and value not in (0.0, 1.0):
        errors.append(
            RowError(
                row, column, "binary", f"outcome {text!r} must be 0 or 1", "0 (no event), 1 (event)"
            )
        )
        return None
    return value


def read_csv(kind: ModelKind, path: Path) -> Cohort:
    """Read and check a hospital cohort; raise CohortError naming every bad row, column and rule."""
    source = str(path)
    tk = kinds.of(kind)
    optional = tk.subgroup_columns
    required = [*kind.csv_columns, kind.outcome_column]
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows, row_lines = [], []
            for record in reader:
                rows.append(record)
                row_lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError) as exc:
        raise CohortError(
            source, [RowError(None, "", "readable", f"cannot read the file: {exc}")]
        ) from exc
    if not rows:
        raise CohortError(source, [RowError(None, "", "header", "the file is empty")])
    header = [h.strip() for h in rows[0]]
    errors: list[RowError] = []
    allowed = ", ".join([*required, *optional])
    for col in required:
        if col not in header:
            errors.append(RowError(None, col, "required_column", "the column is missing", allowed))
    for col in header:
        if col not in required and col not in optional:
            errors.append(RowError(None, col, "unknown_column", "unexpected column", allowed))
    duplicates = {c for c in header if header.count(c) > 1}
    errors.extend(
        RowError(None, c, "duplicate_column", "the column appears twice")
        for c in sorted(duplicates)
    )
    if errors:
        raise CohortError(source, errors)
    kept = [k for k in range(1, len(rows)) if any(cell.strip() for cell in rows[k])]
    body = [rows[k] for k in kept]
    body_lines = [row_lines[k] for k in kept]
    if not body:
        raise CohortError(source, [RowError(None, "", "rows", "the file has a header but no rows")])
    present = [c for c in header if c in optional]
    parsed: dict[str, list[Any]] = {c: [] for c in header}
    bad_rows: set[int] = set()
    for i, cells in enumerate(body):
        row = i + 1
        if len(cells) != len(header):
            errors.append(
                RowError(row, "", "shape", f"{len(cells)} cells, the header has {len(header)}")
            )
            bad_rows.add(i)
            for c in header:
                parsed[c].append(None)
            continue
        before = len(errors)
        for col, text in zip(header, cells, strict=True):
            parsed[col].append(_parse_cell(col, kind, text, row, errors))
        if len(errors) > before:
            bad_rows.add(i)
    columns = {
        c: np.array([np.nan if v is None else v for v in parsed[c]], dtype=np.float64)
        for c in kind.csv_columns
    }
    _, resolve_errors = resolve_rows(kind, columns, skip=bad_rows)
    errors.extend(resolve_errors)
    if errors:
        errors.sort(
            key=lambda e: (e.row or 0, header.index(e.column) if e.column in header else -1)
        )
        # Rows are numbered among the data rows; say which file line each is, too.
        errors = [
            dataclasses.replace(e, line=body_lines[e.row - 1]) if e.row else e for e in errors
        ]
        raise CohortError(source, errors)
    outcome = np.array(parsed[kind.outcome_column], dtype=np.int64)
    subgroups: dict[str, npt.NDArray[Any]] = {}
    for s in tk.subgroups:
        if s.column in present:
            dtype = np.int64 if s.boolean else object
            subgroups[s.column] = np.array(parsed[s.column], dtype=dtype)
    return build(kind, columns, outcome, subgroups, source)


# -- split ----------------------------------------------------------------------------------------


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators for (simulation, held-out split, bootstrap), all from one seed.

    The simulation draws from the seed itself (as docs/CLINICAL.md's "seed 7"), the split and the
    bootstrap from spawned children. The split does not depend on how the cohort was produced,
    so `--data` on a CSV written by `--simulate --write-csv` with the same seed holds out the
    same rows.
    """
    root = np.random.SeedSequence(seed)
    split, boot = root.spawn(2)
    return np.random.default_rng(root), np.random.default_rng(split), np.random.default_rng(boot)


def split_indices(
    outcome: IntArray, test_fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Stratified split: the same share of events and non-events is held out."""
    train: list[IntArray] = []
    test: list[IntArray] = []
    for cls in (0, 1):
        idx = np.flatnonzero(outcome == cls)
        idx = rng.permutation(idx)
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def check_split(
    kind: ModelKind, outcome: IntArray, train: IntArray, test: IntArray, source: str
) -> None:
    for name, idx in (("training", train), ("held-out", test)):
        counts = np.bincount(outcome[idx], minlength=2)
        if counts.min() < 1:
            raise CohortError(
                source,
                [
                    RowError(
                        None,
                        kind.outcome_column,
                        "too_few_events",
                        f"the {name} split has {int(counts[1])} event(s) and {int(counts[0])} "
                        "non-event(s); both are needed",
                        "at least a few events and non-events in each split",
                    )
                ],
            )
