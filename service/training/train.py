"""One training run end to end: cohort -> split -> fit -> held-out metrics -> version directory.

Nothing touches the output directory until the cohort has been checked and the model fitted and
evaluated; the version directory is then assembled in a temporary directory and renamed into
place, so a failed run never leaves a half-written version for the registry to find.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from service.core.kinds.base import ModelKind
from service.core.manifest import MANIFEST_FILE
from service.training import card, kinds, manifest, metrics
from service.training.cohort import (
    Cohort,
    CohortError,
    FloatArray,
    IntArray,
    RowError,
    check_split,
    read_csv,
    split_indices,
    streams,
)
from service.training.fit import Coefficients, coefficients, fit, predict_proba
from service.training.simulate import simulate

DEFAULT_TEST_FRACTION = 0.25
DEFAULT_BOOTSTRAP = 1000
N_SELF_TESTS = 6
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
"""The repository's models/ directory (the default --out)."""

VALIDATION_METHODS = ("auto", "split", "bootstrap")
SPLIT_MIN_PER_CLASS = 100
"""--validation auto holds out a split only when the held-out part would have at least this many
events and as many non-events (Collins, Ogundimu & Altman 2016: at least 100 events to validate);
otherwise the whole cohort is fitted and judged with bootstrap optimism correction (Harrell)."""
MIN_PER_CLASS = 10
"""Fewer events (or non-events) than this and the command refuses to fit at all."""
EPV_WARNING = 10.0
"""Events per predictor parameter below which the command and the manifest warn (Peduzzi 1996)."""


@dataclass(frozen=True)
class Source:
    kind: str
    """"simulate" or "csv" """
    n: int
    data_file: str | None = None
    data_sha256: str | None = None


@dataclass(frozen=True)
class TrainingRun:
    kind: ModelKind
    source: Source
    seed: int
    test_fraction: float
    n_boot: int
    cohort: Cohort
    train_idx: IntArray
    """the rows the model was fitted on (every row with bootstrap validation)"""
    test_idx: IntArray
    """the rows the metrics are computed on (every row with bootstrap validation)"""
    model: Any
    coefficients: Coefficients
    p_test: FloatArray
    metrics: dict[str, Any]
    self_tests: list[dict[str, Any]]
    validation: str = "split"
    """"split" (held-out split) or "bootstrap" (whole cohort, optimism corrected)"""
    warnings: tuple[str, ...] = ()

    @property
    def x_train(self) -> FloatArray:
        return self.cohort.features[self.train_idx]

    @property
    def x_test(self) -> FloatArray:
        return self.cohort.features[self.test_idx]

    @property
    def y_test(self) -> IntArray:
        return self.cohort.outcome[self.test_idx]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def simulated_cohort(kind: ModelKind, n: int, seed: int) -> Cohort:
    sim_rng, _, _ = streams(seed)
    return simulate(kind, n, sim_rng)


def train_simulated(
    kind: ModelKind,
    n: int,
    seed: int,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_boot: int = DEFAULT_BOOTSTRAP,
    write_csv_to: Path | None = None,
    validation: str = "auto",
) -> TrainingRun:
    cohort = simulated_cohort(kind, n, seed)
    if write_csv_to is not None:
        from service.training.cohort import write_csv

        write_csv(cohort, write_csv_to)
    return train_cohort(
        cohort, Source("simulate", n), seed, test_fraction, n_boot, validation=validation
    )


def train_csv(
    kind: ModelKind,
    path: Path,
    seed: int,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_boot: int = DEFAULT_BOOTSTRAP,
    validation: str = "auto",
) -> TrainingRun:
    cohort = read_csv(kind, path)
    source = Source("csv", cohort.n, path.name, _sha256(path))
    return train_cohort(
        cohort, source, seed, test_fraction, n_boot, origin=str(path), validation=validation
    )


def choose_validation(outcome: IntArray, test_fraction: float, requested: str = "auto") -> str:
    """The evaluation design: a held-out split only when it can hold SPLIT_MIN_PER_CLASS of each
    outcome class; otherwise bootstrap optimism correction on the whole cohort."""
    if requested not in VALIDATION_METHODS:
        raise ValueError(f"validation must be one of {VALIDATION_METHODS}")
    if requested != "auto":
        return requested
    events = int(outcome.sum())
    smaller = min(events, len(outcome) - events)
    return "split" if round(test_fraction * smaller) >= SPLIT_MIN_PER_CLASS else "bootstrap"


def check_fittable(cohort: Cohort, idx: IntArray, origin: str) -> None:
    """Refuse what no logistic regression can be fitted on: too few events or non-events, or a
    predictor that never varies."""
    kind = cohort.kind
    y = cohort.outcome[idx]
    counts = np.bincount(y, minlength=2)
    errors: list[RowError] = []
    if counts.min() < MIN_PER_CLASS:
        errors.append(
            RowError(
                None,
                kind.outcome_column,
                "too_few_events",
                f"the data to fit has {int(counts[1])} event(s) and {int(counts[0])} "
                "non-event(s); a model cannot be fitted on so few",
                f"at least {MIN_PER_CLASS} events and {MIN_PER_CLASS} non-events",
            )
        )
    x = cohort.features[idx]
    for i, name in enumerate(kind.feature_names):
        if np.all(x[:, i] == x[0, i]):
            errors.append(
                RowError(
                    None,
                    name,
                    "constant",
                    f"{name} has the same value ({x[0, i]:g}) in every row: its effect cannot "
                    "be estimated",
                    "a predictor that varies",
                )
            )
    if errors:
        raise CohortError(origin, errors)


def events_per_predictor(kind: ModelKind, outcome: IntArray) -> dict[str, Any]:
    """EPV: the smaller outcome class of the fitting data per predictor parameter."""
    events = int(outcome.sum())
    smaller = min(events, len(outcome) - events)
    k = len(kind.features)
    return {
        "value": smaller / k,
        "smaller_class_count": smaller,
        "predictor_parameters": k,
        "warning_below": EPV_WARNING,
    }


def train_cohort(
    cohort: Cohort,
    source: Source,
    seed: int,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_boot: int = DEFAULT_BOOTSTRAP,
    origin: str = "cohort",
    validation: str = "auto",
) -> TrainingRun:
    kind = cohort.kind
    _, split_rng, boot_rng = streams(seed)
    method = choose_validation(cohort.outcome, test_fraction, validation)
    if method == "split":
        train_idx, test_idx = split_indices(cohort.outcome, test_fraction, split_rng)
        check_split(kind, cohort.outcome, train_idx, test_idx, origin)
    else:
        train_idx = test_idx = np.arange(cohort.n, dtype=np.int64)
    check_fittable(cohort, train_idx, origin)
    x_train, y_train = cohort.features[train_idx], cohort.outcome[train_idx]
    model = fit(x_train, y_train, kind.feature_names)
    coefs = coefficients(model, x_train)
    p_test = predict_proba(model, cohort.features[test_idx])
    p_train = predict_proba(model, x_train)
    m: dict[str, Any] = {"validation": method}
    m.update(evaluate(cohort, test_idx, p_test, boot_rng, n_boot))
    if method == "split":
        m["evaluated_on"] = "held-out split"
    else:
        m["evaluated_on"] = "whole cohort, bootstrap optimism corrected"
        _correct_for_optimism(m, cohort, boot_rng, n_boot)
    m["training_split"] = {
        "n": len(train_idx),
        "events": int(y_train.sum()),
        "prevalence": float(y_train.mean()),
        "apparent_auc": metrics.auc(y_train, p_train),
    }
    epv = events_per_predictor(kind, y_train)
    m["events_per_predictor"] = epv
    ors = odds_ratios(kind, coefs)
    if ors:
        m["odds_ratios"] = ors
    warnings: list[str] = []
    if epv["value"] < EPV_WARNING:
        warnings.append(
            f"events per predictor {epv['value']:.1f} is below {EPV_WARNING:g} "
            f"({epv['smaller_class_count']} in the smaller outcome class, "
            f"{epv['predictor_parameters']} predictors): the coefficients are unstable and the "
            "model is likely overfitted; collect more events before relying on it"
        )
    tests = self_tests(kind, model, cohort.features[test_idx], p_test)
    return TrainingRun(
        kind,
        source,
        seed,
        test_fraction,
        n_boot,
        cohort,
        train_idx,
        test_idx,
        model,
        coefs,
        p_test,
        m,
        tests,
        method,
        tuple(warnings),
    )


def evaluate(
    cohort: Cohort,
    idx: IntArray,
    p: FloatArray,
    rng: np.random.Generator,
    n_boot: int,
) -> dict[str, Any]:
    """Every metric of the card on the rows idx with predictions p (bootstrap CIs seeded by rng)."""
    kind = cohort.kind
    tk = kinds.of(kind)
    y = cohort.outcome[idx]
    cal = metrics.calibration(y, p)
    out: dict[str, Any] = {
        "n": len(idx),
        "events": int(y.sum()),
        "prevalence": float(y.mean()),
        **metrics.discrimination(y, p, rng, n_boot),
        "brier": metrics.brier(y, p),
        "brier_ci95": metrics.bootstrap_ci(y, p, metrics.brier, rng, n_boot),
        "calibration_intercept": cal["intercept"],
        "calibration_intercept_ci95": cal["intercept_ci95"],
        "calibration_slope": cal["slope"],
        "calibration_slope_ci95": cal["slope_ci95"],
        "calibration_by_decile": metrics.calibration_bins(y, p),
        "bootstrap_replicates": n_boot,
        "risk_bands": metrics.band_table(y, p, [(b.name, b.lower, b.upper) for b in tk.risk_bands]),
        "risk_band_cutoffs": metrics.cutoff_table(
            y, p, [b.lower for b in tk.risk_bands if b.lower > 0]
        ),
    }
    for c in tk.comparators:
        score = cohort.features[idx, kind.feature_names.index(c.feature)]
        out[c.key] = {"label": c.label, **metrics.discrimination(y, score, rng, n_boot)}
    if tk.subgroups:
        subgroups = {k: v[idx] for k, v in cohort.subgroups.items()}
        wanted = {s.column: s.levels for s in tk.subgroups}
        out["subgroups"] = metrics.subgroup_aucs(y, p, subgroups, wanted, rng, n_boot)
    return out


_OPTIMISM_KEYS = ("auc", "brier", "calibration_intercept", "calibration_slope")


def _performance(y: IntArray, p: FloatArray) -> dict[str, float]:
    cal = metrics.calibration(y, p)
    return {
        "auc": metrics.auc(y, p),
        "brier": metrics.brier(y, p),
        "calibration_intercept": float(cal["intercept"]),
        "calibration_slope": float(cal["slope"]),
    }


def _refit_log_odds(x: FloatArray, y: IntArray) -> Callable[[FloatArray], FloatArray] | None:
    """The same unpenalised logistic MLE as fit(), by Newton-Raphson on standardised features:
    an order of magnitude cheaper than a Pipeline per bootstrap replicate. None when the
    resample separates perfectly (no finite MLE)."""
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = np.column_stack([np.ones(len(x)), (x - mean) / sd])
    try:
        beta, _ = metrics.fit_logistic(z, y.astype(np.float64), np.zeros(len(x)))
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 50:
        return None

    def predict(xn: FloatArray) -> FloatArray:
        eta = beta[0] + ((xn - mean) / sd) @ beta[1:]
        return np.asarray(1.0 / (1.0 + np.exp(-eta)), dtype=np.float64)

    return predict


def optimism(cohort: Cohort, rng: np.random.Generator, n_boot: int) -> dict[str, Any]:
    """Harrell's bootstrap optimism: refit on each resample, and the mean of (performance on the
    resample - performance of that refit on the original cohort) is how much the apparent
    performance flatters the model (Harrell, Lee & Mark 1996; TRIPOD item 10b)."""
    x, y = cohort.features, cohort.outcome
    n = cohort.n
    diffs: dict[str, list[float]] = {k: [] for k in _OPTIMISM_KEYS}
    skipped = separated = 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = y[idx]
        if min(int(yb.sum()), n - int(yb.sum())) < 2:
            skipped += 1
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            predict = _refit_log_odds(x[idx], yb)
            if predict is None:
                separated += 1
                continue
            boot = _performance(yb, predict(x[idx]))
            orig = _performance(y, predict(x))
        for k in _OPTIMISM_KEYS:
            diffs[k].append(boot[k] - orig[k])
    return {
        "replicates": n_boot - skipped - separated,
        "skipped_single_class_resamples": skipped,
        "skipped_separated_resamples": separated,
        **{k: float(np.mean(v)) for k, v in diffs.items()},
    }


def _correct_for_optimism(
    m: dict[str, Any], cohort: Cohort, rng: np.random.Generator, n_boot: int
) -> None:
    """Replace the apparent AUC, Brier and calibration by their optimism-corrected values; their
    CIs are the apparent ones shifted by the optimism (an approximation, said so in the card)."""
    opt = optimism(cohort, rng, n_boot)
    m["apparent"] = {k: m[k] for k in _OPTIMISM_KEYS}
    m["optimism"] = opt
    for key, ci_key in (
        ("auc", "auc_ci95"),
        ("brier", "brier_ci95"),
        ("calibration_intercept", "calibration_intercept_ci95"),
        ("calibration_slope", "calibration_slope_ci95"),
    ):
        m[key] = m[key] - opt[key]
        m[ci_key] = [v - opt[key] for v in m[ci_key]]


def odds_ratios(kind: ModelKind, coefs: Coefficients) -> list[dict[str, Any]]:
    """Fitted ORs in the published units (Wald CI from the fitting data) beside the published."""
    rows = []
    for pub in kinds.of(kind).published_ors:
        i = kind.feature_names.index(pub.feature)
        w, se = coefs.weights[i] * pub.per_value, coefs.standard_errors[i] * pub.per_value
        fitted = float(np.exp(w))
        rows.append(
            {
                "feature": pub.feature,
                "per": pub.per,
                "fitted": fitted,
                "fitted_ci95": [float(np.exp(w - 1.959964 * se)), float(np.exp(w + 1.959964 * se))],
                "published": pub.odds_ratio,
                "published_ci95": list(pub.ci95),
                "inside_published_ci": pub.ci95[0] <= fitted <= pub.ci95[1],
            }
        )
    return rows


def self_tests(
    kind: ModelKind, model: Any, x_test: FloatArray, p_test: FloatArray
) -> list[dict[str, Any]]:
    """Evaluation patients spread over the risk range; expected = sklearn's predict_proba."""
    order = np.argsort(p_test, kind="stable")
    picks: list[int] = []
    for q in np.linspace(0.02, 0.98, N_SELF_TESTS):
        i = int(order[int(round(q * (len(order) - 1)))])
        if i not in picks:
            picks.append(i)
    x = x_test[picks]
    expected = predict_proba(model, x)
    return [
        {
            "features": {name: float(v) for name, v in zip(kind.feature_names, row, strict=True)},
            "expected_probability": float(e),
        }
        for row, e in zip(x, expected, strict=True)
    ]


def command_line(run: TrainingRun, version: str) -> str:
    base = f"ecmo-train {run.kind.name}"
    if run.source.kind == "simulate":
        base += f" --simulate --n {run.source.n}"
    else:
        base += f" --data {run.source.data_file}"
    return f"{base} --seed {run.seed} --version {version}"


def data_label(run: TrainingRun) -> str:
    """What the plots were drawn on, in their titles ("simulated" for a simulated cohort)."""
    where = "held-out split" if run.validation == "split" else "whole cohort, apparent"
    return (
        f"{where}, simulated cohort" if run.source.kind == "simulate" else f"{where}, local cohort"
    )


def write_atomically(
    out: Path, name: str, version: str, fill: Callable[[Path], None], force: bool = False
) -> Path:
    """Write <out>/<name>/<version>/ atomically: fill() writes the files into a temporary
    directory that is renamed into place; refuse to replace a version unless forced."""
    dest = out / name / version
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} already exists; use --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    # The temporary directory sits directly under `out`, where the registry looks for model
    # names, and holds only files, so the registry never mistakes it for a version.
    tmp = Path(tempfile.mkdtemp(prefix=".ecmo-train-", dir=out))
    try:
        fill(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a version is read by the service's user
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def write_version(
    run: TrainingRun, out: Path, version: str, force: bool = False, created: datetime | None = None
) -> Path:
    """Write models/<name>/<version>/ atomically; refuse to replace a version unless forced."""
    tk = kinds.of(run.kind)

    def fill(tmp: Path) -> None:
        # matplotlib (the [train] extra) only here: ecmo-train checks for it before it starts.
        from service.training import plots

        artifact = tmp / manifest.ARTIFACT_FILE
        joblib.dump(run.model, artifact)
        roc_curves = [("combined model", run.p_test)]
        for c in tk.comparators:
            roc_curves.append((c.label, run.x_test[:, run.kind.feature_names.index(c.feature)]))
        label = data_label(run)
        plots.write_roc(tmp / manifest.ROC_FILE, run.y_test, roc_curves, run.kind.name, label)
        plots.write_calibration(
            tmp / manifest.CALIBRATION_FILE, run.y_test, run.p_test, run.kind.name, label
        )
        doc = manifest.build(
            run,
            version,
            _sha256(artifact),
            created or datetime.now(UTC),
            command_line(run, version),
        )
        manifest.write(tmp / MANIFEST_FILE, doc)
        (tmp / manifest.CARD_FILE).write_text(card.render(doc), encoding="utf-8")

    return write_atomically(out, run.kind.name, version, fill, force)
