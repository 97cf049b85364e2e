"""manifest.json for one trained version: every fact the card shows and the registry checks.

The card (card.py) is rendered from this document alone, so the two can never disagree.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.core.drift import reference_distribution
from service.core.manifest import MANIFEST_VERSION
from service.training import kinds
from service.training.fit import predict_proba
from service.training.provenance import provenance, references, runtime

if TYPE_CHECKING:
    from service.training.train import TrainingRun

ARTIFACT_FILE = "model.joblib"
CARD_FILE = "MODEL_CARD.md"
ROC_FILE = "roc.png"
CALIBRATION_FILE = "calibration.png"

REFERENCE_LABEL = "reference model fitted on simulated data; not for clinical decisions"
LOCAL_LABEL = (
    "model fitted on a local cohort by the training command; not validated: not for clinical "
    "decisions until it has been validated and approved locally"
)


def reference_patient(run: TrainingRun) -> dict[str, Any]:
    """The patient every contribution is measured against: the mean of each feature in the data
    the model was fitted on (the StandardScaler's means), and the log-odds the model gives it."""
    scaler = run.model.steps[0][1]
    means = [float(v) for v in scaler.mean_]
    log_odds = run.coefficients.intercept + math.fsum(
        w * v for w, v in zip(run.coefficients.weights, means, strict=True)
    )
    return {
        "definition": "the mean of each feature over the rows the model was fitted on; a yes/no "
        "feature's mean is the share of yes (so this patient is a statistical average, not a "
        "real one). Each contribution is the log-odds difference between the patient's value "
        "and this mean; the contributions add up to the patient's log-odds minus this "
        "patient's.",
        "features": dict(zip(run.kind.feature_names, means, strict=True)),
        "log_odds": log_odds,
        "probability": 1.0 / (1.0 + math.exp(-log_odds)),
    }


def evaluation(run: TrainingRun) -> dict[str, Any]:
    from service.training.train import SPLIT_MIN_PER_CLASS

    if run.validation == "split":
        method = (
            "stratified random held-out split (seeded); every metric is on the held-out rows, "
            "the model was fitted on the others"
        )
    else:
        method = (
            "bootstrap optimism correction (Harrell; TRIPOD type 1b): the model is fitted on the "
            "whole cohort and refitted on each bootstrap resample; AUC, Brier and calibration "
            "are the apparent values minus the mean optimism, their CIs the apparent CIs shifted "
            "by the optimism (an approximation)"
        )
    return {
        "method": method,
        "policy": f"--validation auto holds out a split only when it would contain at least "
        f"{SPLIT_MIN_PER_CLASS} events and {SPLIT_MIN_PER_CLASS} non-events (Collins 2016); "
        "smaller cohorts are judged by bootstrap optimism correction on every row",
    }


def build(
    run: TrainingRun, version: str, sha256: str, created: datetime, command: str
) -> dict[str, Any]:
    kind = run.kind
    tk = kinds.of(kind)
    x_train = run.x_train
    features = []
    for i, spec in enumerate(kind.features):
        features.append(
            {
                "name": spec.name,
                "label": spec.label,
                "unit": spec.unit,
                "type": spec.type,
                "hard_bounds": [spec.hard.low, spec.hard.high],
                "soft_bounds": [spec.soft.low, spec.soft.high],
                "derivation_range": [float(x_train[:, i].min()), float(x_train[:, i].max())],
            }
        )
    coefs = run.coefficients
    simulated = run.source.kind == "simulate"
    label = REFERENCE_LABEL if simulated else LOCAL_LABEL
    limits = tk.limits_simulated if simulated else LOCAL_LABEL
    n_held_out = len(run.test_idx) if run.validation == "split" else 0
    training: dict[str, Any] = {
        "source": run.source.kind,
        "seed": run.seed,
        "n": run.source.n,
        "split": {
            "method": "stratified random split on the outcome (seeded)"
            if run.validation == "split"
            else "none: fitted on every row, judged by bootstrap optimism correction",
            "test_fraction": run.test_fraction if run.validation == "split" else 0.0,
            "n_train": len(run.train_idx),
            "n_held_out": n_held_out,
        },
        "evaluation": evaluation(run),
        "command": command,
    }
    if not simulated:
        training["data_file"] = run.source.data_file
        training["data_sha256"] = run.source.data_sha256
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": kind.name,
        "kind": kind.name,
        "version": version,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "label": label,
        "artifact": {"file": ARTIFACT_FILE, "sha256": sha256},
        "runtime": runtime(),
        "outcome": kind.outcome,
        "outcome_definition": tk.outcome_definition,
        "features": features,
        "predictors": [
            {"name": p.name, "definition": p.definition, "window": p.window} for p in tk.predictors
        ],
        "derived_features": [
            {"name": d.name, "definition": d.definition, "window": d.window}
            for d in tk.derived_features
        ],
        "model": {
            "type": "Pipeline(StandardScaler, LogisticRegression(C=inf)): unpenalised logistic "
            "regression; contributions are exact and additive in log-odds",
            "intercept_log_odds": coefs.intercept,
            "coefficients_log_odds_per_unit": dict(
                zip(kind.feature_names, coefs.weights, strict=True)
            ),
        },
        "reference_patient": reference_patient(run),
        "risk_bands": [b.manifest_entry() for b in tk.risk_bands],
        "metrics": run.metrics,
        "warnings": list(run.warnings),
        "self_tests": run.self_tests,
        "provenance": provenance(run),
        "references": references(kind.name),
        "intended_use": tk.intended_use,
        "limits": limits,
        "card": CARD_FILE,
        "plots": {"roc": ROC_FILE, "calibration": CALIBRATION_FILE},
        "training": training,
        # What the drift alerts compare live inputs and probabilities with (service/core/drift.py).
        "reference_distribution": reference_distribution(
            kind.features, x_train, predict_proba(run.model, x_train)
        ),
    }


def write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
