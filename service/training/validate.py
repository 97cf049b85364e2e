"""Site validation: score a hospital's cohort with a served version and judge it, before go-live.

    ecmo-validate ich --data cohort.csv [--version 1.0.0] [--models models/] [--report DIR]
    ecmo-validate ich --data cohort.csv --recalibrate [intercept|slope] [--new-version 1.0.1]
    ecmo-validate ich --data later.csv --version 1.0.1 --accept

The version is loaded through the service's registry (sha256 checked before unpickling, the
manifest's self-tests replayed) and every row is scored by service.core.scoring, the layer that
serves every protocol's requests. Exit status: 0 done (with --accept: passed),
1 refused input or a failed acceptance, 2 usage.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from service.core.kinds import MODEL_KINDS
from service.core.registry import LoadedModel, Registry, load_version, sha256_file
from service.core.scoring import Scoring
from service.errors import ArtifactRejected, ServiceError
from service.training import card, kinds, metrics, report
from service.training.cohort import Cohort, CohortError, FloatArray, read_csv
from service.training.fit import predict_proba
from service.training.manifest import ARTIFACT_FILE
from service.training.train import MODELS_DIR, write_atomically

DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 7
REPORT_JSON = "validation.json"
REPORT_HTML = "validation.html"

# Acceptance criteria (docs/VALIDATION.md): all must hold for "passed".
MIN_EVENTS = 100
"""events and non-events each (Collins, Ogundimu & Altman 2016)"""
MIN_AUC_LOWER = 0.70
"""the lower bound of the AUC's bootstrap 95% CI"""


@dataclass(frozen=True)
class Scored:
    model: LoadedModel
    cohort: Cohort
    p: FloatArray
    cohort_sha256: str
    cohort_file: str


def score(model: LoadedModel, cohort: Cohort, scoring: Scoring | None = None) -> FloatArray:
    """Each row through the service's own scoring layer (core.scoring: the input rules, unit
    conversion, derived features and predictor every protocol uses), as API-shaped inputs."""
    scoring = scoring or Scoring()
    to_api = kinds.of(cohort.kind).api_inputs
    out = np.empty(cohort.n)
    for i in range(cohort.n):
        row = {c: float(cohort.columns[c][i]) for c in cohort.kind.csv_columns}
        out[i] = scoring.one(model, to_api(row)).probability
    return out


def load(models: Path, name: str, version: str | None, data: Path) -> Scored:
    model = Registry.load(models).get(name, version)
    cohort = read_csv(MODEL_KINDS[name], data)
    return Scored(model, cohort, score(model, cohort), sha256_file(data), data.name)


def acceptance(numbers: dict[str, Any], recalibrated_on: str | None) -> dict[str, Any]:
    """The documented criteria, each with whether it holds."""
    cal = numbers["calibration"]
    checks = [
        (
            f"at least {MIN_EVENTS} events and {MIN_EVENTS} non-events",
            min(numbers["events"], numbers["n"] - numbers["events"]) >= MIN_EVENTS,
        ),
        (
            f"AUC 95% CI lower bound >= {MIN_AUC_LOWER}",
            numbers["auc_ci95"][0] >= MIN_AUC_LOWER,
        ),
        (
            "calibration-in-the-large 95% CI includes 0",
            cal["intercept_ci95"][0] <= 0.0 <= cal["intercept_ci95"][1],
        ),
        (
            "calibration slope 95% CI includes 1",
            cal["slope_ci95"][0] <= 1.0 <= cal["slope_ci95"][1],
        ),
        (
            "the cohort is not the one this version was recalibrated on",
            recalibrated_on != numbers["cohort"]["sha256"],
        ),
    ]
    return {
        "passed": all(ok for _, ok in checks),
        "criteria": [{"criterion": c, "met": ok} for c, ok in checks],
    }


def numbers(scored: Scored, seed: int, n_boot: int) -> dict[str, Any]:
    """Every number of the report (no patient-level data)."""
    model, cohort, p = scored.model, scored.cohort, scored.p
    tk = kinds.of(cohort.kind)
    y = cohort.outcome
    rng = np.random.default_rng(seed)
    cal = metrics.calibration(y, p)
    lo, hi = tk.decision_thresholds
    thresholds = np.round(np.arange(lo, hi + 1e-9, 0.01), 4)
    bands = model.manifest.risk_bands
    out: dict[str, Any] = {
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
        "cohort": {"file": scored.cohort_file, "sha256": scored.cohort_sha256},
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "seed": seed,
        "bootstrap_replicates": n_boot,
        "n": cohort.n,
        "events": int(y.sum()),
        "prevalence": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "observed_expected_ratio": float(y.mean() / p.mean()),
        **metrics.discrimination(y, p, rng, n_boot),
        "brier": metrics.brier(y, p),
        "brier_ci95": metrics.bootstrap_ci(y, p, metrics.brier, rng, n_boot),
        "calibration": {
            "intercept": cal["intercept"],
            "intercept_ci95": cal["intercept_ci95"],
            "slope": cal["slope"],
            "slope_ci95": cal["slope_ci95"],
        },
        "calibration_curve": metrics.smoothed_calibration(y, p),
        "calibration_by_decile": metrics.calibration_bins(y, p),
        "decision_curve": metrics.net_benefit(y, p, thresholds),
        "risk_bands": metrics.band_table(y, p, [(b.name, b.lower, b.upper) for b in bands]),
        "risk_band_cutoffs": metrics.cutoff_table(y, p, [b.lower for b in bands if b.lower > 0]),
    }
    present = {s.column: s.levels for s in tk.subgroups if s.column in cohort.subgroups}
    out["subgroups"] = (
        metrics.subgroup_aucs(y, p, cohort.subgroups, present, rng, n_boot) if present else {}
    )
    for var, table in out["subgroups"].items():
        values = cohort.subgroups[var]
        for label, level in present[var]:
            mask = values == level
            table[label]["mean_predicted"] = float(p[mask].mean()) if mask.any() else None
            table[label]["observed"] = float(y[mask].mean()) if mask.any() else None
    return out


def write_report(doc: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / REPORT_JSON, directory / REPORT_HTML
    json_path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(report.html(doc), encoding="utf-8")
    return json_path, html_path


def site_validation(doc: dict[str, Any], status: str) -> dict[str, Any]:
    """The manifest's site_validation entry (the contract the registry reads)."""
    ran = status != "not_run"
    return {
        "status": status,
        "cohort_sha256": doc["cohort"]["sha256"],
        "n": doc["n"],
        "events": doc["events"],
        "date": doc["date"],
        "auc": doc["auc"] if ran else None,
        "calibration_slope": doc["calibration"]["slope"] if ran else None,
        "report": REPORT_JSON,
    }


def recalibrated_doc(
    parent: LoadedModel,
    estimator: Any,
    a: float,
    b: float,
    method: str,
    validation: dict[str, Any],
    version: str,
    sha256: str,
) -> dict[str, Any]:
    """The new version's manifest: the parent's, with the recalibrated model and its provenance."""
    doc = copy.deepcopy(parent.manifest.raw)
    scaler, clf = estimator.steps[0][1], estimator.steps[1][1]
    weights = [float(c) / float(s) for c, s in zip(clf.coef_[0], scaler.scale_, strict=True)]
    means = [float(m) for m in scaler.mean_]
    names = list(parent.kind.feature_names)
    intercept = float(clf.intercept_[0]) - math.fsum(
        w * m for w, m in zip(weights, means, strict=True)
    )
    x = np.array([[t["features"][n] for n in names] for t in doc["self_tests"]])
    doc.update(
        {
            "version": version,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "label": recalibrated_label(parent.version, parent.manifest.raw["label"], "not_run"),
            "artifact": {"file": ARTIFACT_FILE, "sha256": sha256},
            "parent_version": parent.version,
            "recalibration": {
                "parent_label": parent.manifest.raw["label"],
                "method": method,
                "a": a,
                "b": b,
                "formula": f"log-odds = a + b x log-odds of version {parent.version}",
                "cohort_sha256": validation["cohort"]["sha256"],
                "n": validation["n"],
                "events": validation["events"],
                "parent_validation": {
                    "auc": validation["auc"],
                    "auc_ci95": validation["auc_ci95"],
                    "brier": validation["brier"],
                    "calibration_intercept": validation["calibration"]["intercept"],
                    "calibration_slope": validation["calibration"]["slope"],
                },
            },
            "site_validation": site_validation(validation, "not_run"),
        }
    )
    doc["model"]["intercept_log_odds"] = intercept
    doc["model"]["coefficients_log_odds_per_unit"] = dict(zip(names, weights, strict=True))
    ref = doc.get("reference_patient")
    if ref is not None:
        ref["log_odds"] = float(clf.intercept_[0])
        ref["probability"] = 1.0 / (1.0 + math.exp(-ref["log_odds"]))
    for t, expected in zip(doc["self_tests"], predict_proba(estimator, x), strict=True):
        t["expected_probability"] = float(expected)
    return doc


def recalibrated_label(parent_version: str, parent_label: str, status: str) -> str:
    """The label of a recalibrated version: the parent's (a simulated reference stays one),
    then what was done and where site validation stands."""
    if status == "passed":
        state = "site validation passed (see the card); approval for clinical use is the site's"
    else:
        state = (
            f"site validation {status}: not for clinical decisions until an independent local "
            "cohort passes ecmo-validate --accept"
        )
    return f"{parent_label}; recalibrated on a local cohort from version {parent_version}; {state}"


def recalibrate(
    scored: Scored,
    validation: dict[str, Any],
    method: str,
    models: Path,
    out: Path,
    version: str,
    force: bool = False,
) -> Path:
    """Write a new version whose log-odds are a + b x the parent's (logistic recalibration,
    Cox 1958), fitted on the validation cohort; the parent's artifact is left untouched."""
    parent = scored.model
    a, b = metrics.recalibration(scored.cohort.outcome, scored.p, method)
    source_dir = _version_dir(models, parent.name, parent.version)
    artifact = source_dir / parent.manifest.artifact_file
    if sha256_file(artifact) != parent.sha256:  # re-check: the file is unpickled again here
        raise ArtifactRejected(f"{artifact} changed since it was verified; refusing to unpickle it")
    estimator = joblib.load(artifact)
    clf = estimator.steps[1][1]
    clf.coef_ = clf.coef_ * b
    clf.intercept_ = a + b * clf.intercept_

    def fill(tmp: Path) -> None:
        joblib.dump(estimator, tmp / ARTIFACT_FILE)
        doc = recalibrated_doc(
            parent, estimator, a, b, method, validation, version, sha256_file(tmp / ARTIFACT_FILE)
        )
        for name in doc.get("plots", {}).values():
            if (source_dir / name).is_file():
                shutil.copy2(source_dir / name, tmp / name)
        write_report(validation, tmp)
        (tmp / "manifest.json").write_text(
            json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        (tmp / doc["card"]).write_text(card.render(doc), encoding="utf-8")

    dest = write_atomically(out, parent.name, version, fill, force)
    load_version(dest)  # the service's own checks, before anyone relies on it
    return dest


def record_acceptance(version_dir: Path, validation: dict[str, Any], passed: bool) -> None:
    """Write site_validation into the version's manifest, the report beside it, and the card."""
    manifest_path = version_dir / "manifest.json"
    doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    status = "passed" if passed else "failed"
    doc["site_validation"] = site_validation(validation, status)
    if "recalibration" in doc:
        recal = doc["recalibration"]
        doc["label"] = recalibrated_label(doc["parent_version"], recal["parent_label"], status)
    write_report(validation, version_dir)
    manifest_path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if doc.get("card"):
        (version_dir / doc["card"]).write_text(card.render(doc), encoding="utf-8")


def _version_dir(models: Path, name: str, version: str) -> Path:
    return models / name / version


def _next_patch(version: str) -> str:
    parts = version.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return f"{parts[0]}.{parts[1]}.{int(parts[2]) + 1}"
    return f"{version}.1"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ecmo-validate",
        description="Validate a served model version on a local cohort (and recalibrate it).",
    )
    p.add_argument("kind", choices=sorted(MODEL_KINDS), help="model to validate")
    p.add_argument("--data", type=Path, required=True, metavar="CSV", help="the local cohort")
    p.add_argument("--version", help="version to validate (default: the registry's default)")
    p.add_argument("--models", type=Path, default=MODELS_DIR, help="model directory")
    p.add_argument("--report", type=Path, default=Path("validation-report"), metavar="DIR")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--recalibrate",
        nargs="?",
        const="intercept",
        choices=("intercept", "slope"),
        help="write a new version recalibrated on this cohort (intercept only, or intercept "
        "and slope)",
    )
    action.add_argument(
        "--accept",
        action="store_true",
        help="after review: record the acceptance result in the version's manifest",
    )
    p.add_argument("--new-version", help="the recalibrated version (default: next patch)")
    p.add_argument("--out", type=Path, help="where the new version goes (default: --models)")
    p.add_argument("--force", action="store_true", help="replace an existing new version")
    return p


def _summary(doc: dict[str, Any]) -> str:
    c = doc["calibration"]
    return (
        f"{doc['model']['name']} {doc['model']['version']} on {doc['cohort']['file']}: "
        f"n={doc['n']} events={doc['events']} AUC={doc['auc']:.3f} "
        f"({doc['auc_ci95'][0]:.3f}-{doc['auc_ci95'][1]:.3f}) "
        f"calibration-in-the-large={c['intercept']:.3f} "
        f"({c['intercept_ci95'][0]:.3f} to {c['intercept_ci95'][1]:.3f}) "
        f"slope={c['slope']:.3f} ({c['slope_ci95'][0]:.3f}-{c['slope_ci95'][1]:.3f}) "
        f"Brier={doc['brier']:.4f} O/E={doc['observed_expected_ratio']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.bootstrap < 100:
        parser.error("--bootstrap must be at least 100")
    if (args.new_version or args.out) and not args.recalibrate:
        parser.error("--new-version and --out need --recalibrate")
    try:
        scored = load(args.models, args.kind, args.version, args.data)
    except CohortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    doc = numbers(scored, args.seed, args.bootstrap)
    recalibrated_on = scored.model.manifest.raw.get("recalibration", {}).get("cohort_sha256")
    doc["acceptance"] = acceptance(doc, recalibrated_on)
    json_path, html_path = write_report(doc, args.report)
    print(f"wrote {html_path} and {json_path}")
    print(_summary(doc))
    verdict = "met" if doc["acceptance"]["passed"] else "NOT met"
    print(f"acceptance criteria {verdict}:")
    for c in doc["acceptance"]["criteria"]:
        print(f"  [{'x' if c['met'] else ' '}] {c['criterion']}")
    if args.recalibrate:
        new_version = args.new_version or _next_patch(scored.model.version)
        try:
            dest = recalibrate(
                scored,
                doc,
                args.recalibrate,
                args.models,
                args.out or args.models,
                new_version,
                args.force,
            )
        except (FileExistsError, ServiceError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"wrote {dest}: recalibrated ({args.recalibrate}); site_validation not_run. Review "
            "the report, then validate it on an independent cohort with --accept."
        )
    if args.accept:
        vdir = _version_dir(args.models, scored.model.name, scored.model.version)
        record_acceptance(vdir, doc, doc["acceptance"]["passed"])
        status = "passed" if doc["acceptance"]["passed"] else "failed"
        print(f"recorded site_validation {status} in {vdir / 'manifest.json'}")
        return 0 if doc["acceptance"]["passed"] else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
