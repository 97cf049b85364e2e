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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from service.core.specs import ModelKind
from service.training import card, metrics
from service.training.cohort import (
    Cohort,
    FloatArray,
    IntArray,
    check_split,
    read_csv,
    split_indices,
    streams,
)
from service.training.fit import Coefficients, coefficients, fit, predict_proba
from service.training.published import ICH_ORS
from service.training.simulate import simulate

DEFAULT_TEST_FRACTION = 0.25
DEFAULT_BOOTSTRAP = 1000
N_SELF_TESTS = 6
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
"""The repository's models/ directory (the default --out)."""

WEANING_SUBGROUPS: dict[str, tuple[tuple[str, Any], ...]] = {
    "etiology": (("AMI", "AMI"), ("myocarditis", "myocarditis"), ("other", "other")),
    "ecpr": (("yes", 1), ("no", 0)),
    "crrt": (("yes", 1), ("no", 0)),
}


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
    test_idx: IntArray
    model: Any
    coefficients: Coefficients
    p_test: FloatArray
    metrics: dict[str, Any]
    self_tests: list[dict[str, Any]]

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
) -> TrainingRun:
    cohort = simulated_cohort(kind, n, seed)
    if write_csv_to is not None:
        from service.training.cohort import write_csv

        write_csv(cohort, write_csv_to)
    return train_cohort(cohort, Source("simulate", n), seed, test_fraction, n_boot)


def train_csv(
    kind: ModelKind,
    path: Path,
    seed: int,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> TrainingRun:
    cohort = read_csv(kind, path)
    source = Source("csv", cohort.n, path.name, _sha256(path))
    return train_cohort(cohort, source, seed, test_fraction, n_boot, origin=str(path))


def train_cohort(
    cohort: Cohort,
    source: Source,
    seed: int,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_boot: int = DEFAULT_BOOTSTRAP,
    origin: str = "cohort",
) -> TrainingRun:
    kind = cohort.kind
    _, split_rng, boot_rng = streams(seed)
    train_idx, test_idx = split_indices(cohort.outcome, test_fraction, split_rng)
    check_split(kind, cohort.outcome, train_idx, test_idx, origin)
    x_train, y_train = cohort.features[train_idx], cohort.outcome[train_idx]
    model = fit(x_train, y_train, kind.feature_names)
    coefs = coefficients(model, x_train)
    x_test = cohort.features[test_idx]
    p_test = predict_proba(model, x_test)
    p_train = predict_proba(model, x_train)
    m = evaluate(cohort, test_idx, p_test, coefs, boot_rng, n_boot)
    m["training_split"] = {
        "n": len(train_idx),
        "events": int(y_train.sum()),
        "prevalence": float(y_train.mean()),
        "apparent_auc": metrics.auc(y_train, p_train),
    }
    tests = self_tests(kind, model, x_test, p_test)
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
    )


def evaluate(
    cohort: Cohort,
    test_idx: IntArray,
    p: FloatArray,
    coefs: Coefficients,
    rng: np.random.Generator,
    n_boot: int,
) -> dict[str, Any]:
    kind = cohort.kind
    y = cohort.outcome[test_idx]
    cal = metrics.calibration(y, p)
    out: dict[str, Any] = {
        "evaluated_on": "held-out split",
        "n": len(test_idx),
        "events": int(y.sum()),
        "prevalence": float(y.mean()),
        **metrics.discrimination(y, p, rng, n_boot),
        "brier": metrics.brier(y, p),
        "calibration_intercept": cal["intercept"],
        "calibration_slope": cal["slope"],
        "calibration_by_decile": metrics.calibration_bins(y, p),
        "bootstrap_replicates": n_boot,
    }
    if kind.name == "weaning":
        vrr = cohort.features[test_idx, kind.feature_names.index("vrr")]
        out["vrr_alone"] = metrics.discrimination(y, vrr, rng, n_boot)
        subgroups = {k: v[test_idx] for k, v in cohort.subgroups.items()}
        out["subgroups"] = metrics.subgroup_aucs(y, p, subgroups, WEANING_SUBGROUPS, rng, n_boot)
    if kind.name == "ich":
        out["odds_ratios"] = odds_ratios(kind, coefs)
    return out


def odds_ratios(kind: ModelKind, coefs: Coefficients) -> list[dict[str, Any]]:
    """Fitted ORs in the published units (Wald CI from the training split) beside the published."""
    rows = []
    for pub in ICH_ORS:
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
    """Held-out patients spread over the risk range; expected = sklearn's predict_proba."""
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


def write_version(
    run: TrainingRun, out: Path, version: str, force: bool = False, created: datetime | None = None
) -> Path:
    """Write models/<name>/<version>/ atomically; refuse to replace a version unless forced."""
    dest = out / run.kind.name / version
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} already exists; use --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    # The temporary directory sits directly under `out`, where the registry looks for model
    # names, and holds only files, so the registry never mistakes it for a version.
    tmp = Path(tempfile.mkdtemp(prefix=".ecmo-train-", dir=out))
    try:
        artifact = tmp / "model.joblib"
        joblib.dump(run.model, artifact)
        roc_curves = [("combined model", run.p_test)]
        if run.kind.name == "weaning":
            roc_curves.append(("VRR alone", run.x_test[:, run.kind.feature_names.index("vrr")]))
        # matplotlib (the [train] extra) only here: ecmo-train checks for it before it starts.
        from service.training import plots

        plots.write_roc(tmp / card.ROC_FILE, run.y_test, roc_curves, run.kind.name)
        plots.write_calibration(tmp / card.CALIBRATION_FILE, run.y_test, run.p_test, run.kind.name)
        doc = card.manifest(
            run,
            version,
            _sha256(artifact),
            created or datetime.now(UTC),
            command_line(run, version),
        )
        card.write_manifest(tmp / "manifest.json", doc)
        (tmp / card.CARD_FILE).write_text(card.render_card(doc), encoding="utf-8")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
