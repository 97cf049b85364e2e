"""The training command: ``ecmo-train`` / ``python -m service.training``.

    ecmo-train weaning --simulate [--n 20000] [--seed 7] [--write-csv cohort.csv]
    ecmo-train ich --data cohort.csv [--seed 7]
    common: [--version 1.0.0] [--out models/] [--force] [--test-fraction 0.25] [--bootstrap 1000]
            [--validation auto|split|bootstrap]

--validation auto (the default) holds out a split only when it would contain at least 100 events
and 100 non-events; a smaller cohort is fitted on every row and judged by bootstrap optimism
correction. Events per predictor below 10 are warned about here and in the manifest.

Exit status: 0 written, 1 the data or the output directory was refused (nothing written), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from service.core.kinds import MODEL_KINDS
from service.training.cohort import CohortError
from service.training.provenance import CLINICAL_DOC
from service.training.simulate import DEFAULT_N, DEFAULT_SEED
from service.training.train import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TEST_FRACTION,
    MODELS_DIR,
    SPLIT_MIN_PER_CLASS,
    VALIDATION_METHODS,
    TrainingRun,
    train_csv,
    train_simulated,
    write_version,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ecmo-train",
        description="Train a reference ECMO risk model and write models/<name>/<version>/.",
    )
    p.add_argument("kind", choices=sorted(MODEL_KINDS), help="model to train")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--simulate", action="store_true", help=f"simulate the reference cohort ({CLINICAL_DOC})"
    )
    src.add_argument(
        "--data",
        type=Path,
        metavar="CSV",
        help="a hospital cohort: the model's CSV columns in canonical units plus the outcome",
    )
    p.add_argument("--n", type=int, default=DEFAULT_N, help="simulated cohort size (default 20000)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for simulation and split")
    p.add_argument(
        "--write-csv", type=Path, metavar="PATH", help="with --simulate: also write the cohort CSV"
    )
    p.add_argument("--version", default="1.0.0", help="version directory name (default 1.0.0)")
    p.add_argument(
        "--out", type=Path, default=MODELS_DIR, help=f"model directory (default {MODELS_DIR})"
    )
    p.add_argument("--force", action="store_true", help="replace an existing version directory")
    p.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION)
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap replicates")
    p.add_argument(
        "--validation",
        choices=VALIDATION_METHODS,
        default="auto",
        help="how the model is judged: a held-out split, bootstrap optimism correction on the "
        f"whole cohort, or auto (split only with >= {SPLIT_MIN_PER_CLASS} held-out events and "
        "non-events)",
    )
    return p


def _summary(run: TrainingRun) -> str:
    m = run.metrics
    where = "held-out" if run.validation == "split" else "optimism-corrected (whole cohort)"
    epv = m["events_per_predictor"]
    lines = [
        f"{where} n={m['n']} prevalence={m['prevalence']:.3f} "
        f"AUC={m['auc']:.3f} ({m['auc_ci95'][0]:.3f}-{m['auc_ci95'][1]:.3f}) "
        f"Brier={m['brier']:.4f} calibration intercept={m['calibration_intercept']:.3f} "
        f"slope={m['calibration_slope']:.3f}",
        f"events per predictor={epv['value']:.1f}",
    ]
    for value in m.values():
        if isinstance(value, dict) and "label" in value and "auc" in value:
            lines.append(f"{value['label']} AUC={value['auc']:.3f}")
    for o in m.get("odds_ratios", []):
        lines.append(
            f"OR {o['feature']} per {o['per']}: {o['fitted']:.3f} "
            f"(published {o['published']} {o['published_ci95']})"
        )
    return "\n".join(lines)


def _missing_training_extra() -> str | None:
    """matplotlib (the [train] extra) draws the card's ROC and calibration plots."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return (
            "error: ecmo-train needs the training extra (matplotlib, for the model card's ROC and "
            "calibration plots): pip install 'ecmo-risk-service[train]' (in a checkout: "
            "scripts/setup)"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (missing := _missing_training_extra()) is not None:
        print(missing, file=sys.stderr)
        return 2
    kind = MODEL_KINDS[args.kind]
    if args.write_csv is not None and not args.simulate:
        parser.error("--write-csv needs --simulate")
    if args.n < 20 and args.simulate:
        parser.error("--n must be at least 20")
    if not 0.05 <= args.test_fraction <= 0.5:
        parser.error("--test-fraction must be between 0.05 and 0.5")
    if args.bootstrap < 100:
        parser.error("--bootstrap must be at least 100")
    dest = args.out / kind.name / args.version
    if dest.exists() and not args.force:
        print(f"error: {dest} already exists; use --force to replace it", file=sys.stderr)
        return 1
    try:
        if args.simulate:
            run = train_simulated(
                kind,
                args.n,
                args.seed,
                args.test_fraction,
                args.bootstrap,
                args.write_csv,
                args.validation,
            )
        else:
            run = train_csv(
                kind, args.data, args.seed, args.test_fraction, args.bootstrap, args.validation
            )
    except CohortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        written = write_version(run, args.out, args.version, force=args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    print(_summary(run))
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
