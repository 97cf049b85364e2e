"""manifest.json and MODEL_CARD.md for one trained version.

The card is rendered from the manifest document alone, so the two can never disagree.
The card follows TRIPOD's headings (source of data, outcome, predictors, model, performance,
calibration, subgroups, limitations) and says which numbers are published and which simulated.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import sklearn

from service.core.drift import reference_distribution
from service.core.manifest import MANIFEST_VERSION
from service.training import published
from service.training.fit import predict_proba

if TYPE_CHECKING:
    from service.training.train import TrainingRun

CARD_FILE = "MODEL_CARD.md"
ROC_FILE = "roc.png"
CALIBRATION_FILE = "calibration.png"

RISK_BANDS: dict[str, list[dict[str, Any]]] = {
    "weaning": [
        {
            "name": "low",
            "lower": 0.0,
            "upper": 0.3,
            "cds_indicator": "warning",
            "description": "Low probability of successful weaning: weaning trial unlikely to succeed now.",
        },
        {
            "name": "intermediate",
            "lower": 0.3,
            "upper": 0.6,
            "cds_indicator": "info",
            "description": "Intermediate probability of successful weaning: reassess over the next day.",
        },
        {
            "name": "high",
            "lower": 0.6,
            "upper": 1.0,
            "cds_indicator": "info",
            "description": "High probability of successful weaning: consider a weaning trial.",
        },
    ],
    "ich": [
        {
            "name": "low",
            "lower": 0.0,
            "upper": 0.05,
            "cds_indicator": "info",
            "description": "Low probability of intracranial hemorrhage during ECMO.",
        },
        {
            "name": "intermediate",
            "lower": 0.05,
            "upper": 0.15,
            "cds_indicator": "warning",
            "description": "Intermediate probability of ICH: review anticoagulation and transfusion.",
        },
        {
            "name": "high",
            "lower": 0.15,
            "upper": 1.0,
            "cds_indicator": "critical",
            "description": "High probability of ICH: consider neuro-imaging and bleeding-risk review.",
        },
    ],
}

DERIVED_FEATURES: dict[str, list[dict[str, str]]] = {
    "weaning": [
        {
            "name": "vrr",
            "definition": "(VIS_0h - VIS_24h) / VIS_0h, winsorised to [-1, 1]; VIS_0h = 0 is rejected",
        },
        {
            "name": "vis_24h",
            "definition": "when given as infusions: dopamine + dobutamine + 100 x epinephrine + "
            "10 x milrinone + 10000 x vasopressin + 100 x norepinephrine (Gaies 2010; "
            "catecholamines and milrinone in ug/kg/min, vasopressin in U/kg/min)",
        },
    ],
    "ich": [
        {
            "name": "gwr",
            "definition": "when given as Hounsfield units: grey-matter HU / white-matter HU on "
            "non-contrast head CT at basal-ganglia level",
        },
    ],
}

REFERENCE_LABEL = "reference model fitted on simulated data; not for clinical decisions"
LOCAL_LABEL = (
    "model fitted on a local cohort by the training command; not validated: not for clinical "
    "decisions until it has been validated and approved locally"
)

_INTENDED_USE = {
    "weaning": "Estimate the probability of successful weaning from VA-ECMO in adult cardiogenic "
    "shock, 24 h after ECMO start, to support (never replace) the weaning decision.",
    "ich": "Estimate the probability of intracranial hemorrhage in adults on ECMO for at least "
    "24 h without ICH before ECMO, to support bleeding-risk review.",
}

_LIMITS_SIMULATED = {
    "weaning": "Reference model fitted on simulated data; not for clinical decisions. The cohort "
    "is simulated from a recipe tuned to the published prevalence and AUCs of one "
    "single-centre study of 150 patients; no published coefficients exist, so the slopes are "
    "design choices constrained only by the published directions. 'VIS' and 'lactate' in the "
    "combined model were inferred to be the 24-h values. Not validated externally.",
    "ich": "Reference model fitted on simulated data; not for clinical decisions. The cohort is "
    "simulated with the published odds ratios of one study of 227 patients (22 events); the "
    "units of the ORs were inferred from their CI widths (FFP per 100 mL could be per 200 mL; "
    "the FFP time window is unknown); GWR is scanner dependent. Not validated externally.",
}


def _runtime() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def _provenance(run: TrainingRun) -> dict[str, Any]:
    name = run.kind.name
    source = published.WEANING_SOURCE if name == "weaning" else published.ICH_SOURCE
    figures = published.WEANING_PUBLISHED if name == "weaning" else published.ICH_PUBLISHED
    if run.source.kind == "simulate":
        derivation = (
            "simulated with the recipe in CLINICAL.md (seeded); no patient-level data was used"
        )
        fitted = (
            "simulated: every coefficient, metric, derivation range and self-test in this "
            "manifest comes from the simulated cohort"
        )
    else:
        derivation = (
            f"local cohort {run.source.data_file} (sha256 {run.source.data_sha256}), "
            "checked against the service's input rules"
        )
        fitted = "fitted: every coefficient, metric and range here comes from the local cohort"
    inferred = (
        ["'VIS' and 'lactate' in the published combined model are the 24-h values"]
        if name == "weaning"
        else [
            "OR units: GWR per 0.01, FFP per 100 mL (per 200 mL not excluded), platelets per 1x10^9/L"
        ]
    )
    return {
        "published": {"source": source, "figures": figures},
        "derivation_cohort": derivation,
        "this_model": fitted,
        "inferred": inferred,
    }


def manifest(
    run: TrainingRun, version: str, sha256: str, created: datetime, command: str
) -> dict[str, Any]:
    kind = run.kind
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
    label = REFERENCE_LABEL if run.source.kind == "simulate" else LOCAL_LABEL
    limits = _LIMITS_SIMULATED[kind.name] if run.source.kind == "simulate" else LOCAL_LABEL
    training: dict[str, Any] = {
        "source": run.source.kind,
        "seed": run.seed,
        "n": run.source.n,
        "split": {
            "method": "stratified random split on the outcome (seeded)",
            "test_fraction": run.test_fraction,
            "n_train": len(run.train_idx),
            "n_held_out": len(run.test_idx),
        },
        "command": command,
    }
    if run.source.kind == "csv":
        training["data_file"] = run.source.data_file
        training["data_sha256"] = run.source.data_sha256
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": kind.name,
        "kind": kind.name,
        "version": version,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "label": label,
        "artifact": {"file": "model.joblib", "sha256": sha256},
        "runtime": _runtime(),
        "outcome": kind.outcome,
        "features": features,
        "derived_features": DERIVED_FEATURES[kind.name],
        "model": {
            "type": "Pipeline(StandardScaler, LogisticRegression(C=inf)): unpenalised logistic "
            "regression; contributions are exact and additive in log-odds",
            "intercept_log_odds": coefs.intercept,
            "coefficients_log_odds_per_unit": dict(
                zip(kind.feature_names, coefs.weights, strict=True)
            ),
        },
        "risk_bands": RISK_BANDS[kind.name],
        "metrics": run.metrics,
        "self_tests": run.self_tests,
        "provenance": _provenance(run),
        "intended_use": _INTENDED_USE[kind.name],
        "limits": limits,
        "card": CARD_FILE,
        "plots": {"roc": ROC_FILE, "calibration": CALIBRATION_FILE},
        "training": training,
        # What the drift alerts compare live inputs and probabilities with (service/core/drift.py).
        "reference_distribution": reference_distribution(
            kind.features, x_train, predict_proba(run.model, x_train)
        ),
    }


def write_manifest(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")


# -- the card -------------------------------------------------------------------------------------


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def _ci(pair: list[float], digits: int = 3) -> str:
    return f"{_f(pair[0], digits)}–{_f(pair[1], digits)}"


def _g(x: float) -> str:
    return f"{x:.4g}"


def render_card(doc: dict[str, Any]) -> str:
    m = doc["metrics"]
    name = doc["name"]
    pub = doc["provenance"]["published"]
    t = doc["training"]
    lines = [
        f"# Model card: {name} {doc['version']}",
        "",
        f"> **{doc['label'][0].upper() + doc['label'][1:]}.**",
        "",
        f"Outcome: {doc['outcome']}. Created {doc['created']}. Artifact `{doc['artifact']['file']}` "
        f"(sha256 `{doc['artifact']['sha256']}`), scikit-learn {doc['runtime']['scikit_learn']}, "
        f"numpy {doc['runtime']['numpy']}, joblib {doc['runtime']['joblib']}, "
        f"Python {doc['runtime']['python']}.",
        "",
        "## Intended use",
        "",
        doc["intended_use"],
        "",
        "## Data",
        "",
        f"- Source: {doc['provenance']['derivation_cohort']}.",
        f"- n = {t['n']} (seed {t['seed']}); {t['split']['method']}: "
        f"{t['split']['n_train']} for fitting, {t['split']['n_held_out']} held out "
        f"(fraction {t['split']['test_fraction']}). Every metric below is on the held-out split.",
        f"- Held-out prevalence {_f(m['prevalence'])} ({m['events']}/{m['n']}); "
        f"training prevalence {_f(m['training_split']['prevalence'])}.",
        f"- Reproduce: `{t['command']}`.",
        "",
        "### Predictors (canonical units) and the derivation cohort's observed range",
        "",
        "| feature | label | unit | type | hard bounds | soft bounds | derivation range |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in doc["features"]:
        lines.append(
            f"| `{f['name']}` | {f['label']} | {f['unit']} | {f['type']} | "
            f"{_g(f['hard_bounds'][0])} to {_g(f['hard_bounds'][1])} | "
            f"{_g(f['soft_bounds'][0])} to {_g(f['soft_bounds'][1])} | "
            f"{_g(f['derivation_range'][0])} to {_g(f['derivation_range'][1])} |"
        )
    lines += ["", "Derived features:", ""]
    lines += [f"- `{d['name']}`: {d['definition']}" for d in doc["derived_features"]]
    lines += [
        "",
        "Inputs outside the derivation range are extrapolations; the service warns when it happens.",
        "",
        "## Model",
        "",
        f"{doc['model']['type']}.",
        "",
        "| term | log-odds per unit | odds ratio per unit |",
        "|---|---|---|",
        f"| intercept | {_g(doc['model']['intercept_log_odds'])} | |",
    ]
    for feat, w in doc["model"]["coefficients_log_odds_per_unit"].items():
        lines.append(f"| `{feat}` | {_g(w)} | {_g(float(np.exp(w)))} |")
    lines += ["", "Risk bands (probability of the outcome):", ""]
    for b in doc["risk_bands"]:
        lines.append(
            f"- **{b['name']}** [{b['lower']}, {b['upper']}{']' if b['upper'] == 1.0 else ')'}"
            f" (CDS indicator `{b['cds_indicator']}`): {b['description']}"
        )
    lines += [
        "",
        "## Performance (held-out split)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| AUC (bootstrap 95% CI, {m['bootstrap_replicates']} replicates) | "
        f"{_f(m['auc'])} ({_ci(m['auc_ci95'])}) |",
    ]
    if "vrr_alone" in m:
        lines.append(
            f"| AUC of VRR alone | {_f(m['vrr_alone']['auc'])} ({_ci(m['vrr_alone']['auc_ci95'])}) |"
        )
    lines += [
        f"| Brier score | {_f(m['brier'], 4)} |",
        f"| prevalence | {_f(m['prevalence'])} |",
        f"| apparent AUC on the training split | {_f(m['training_split']['apparent_auc'])} |",
        "",
        f"![ROC curve]({doc['plots']['roc']})",
        "",
        "## Calibration (held-out split)",
        "",
        f"- Calibration intercept (calibration-in-the-large, logit(p) as offset): "
        f"{_f(m['calibration_intercept'])} (ideal 0).",
        f"- Calibration slope: {_f(m['calibration_slope'])} (ideal 1).",
        "",
        "| decile | n | mean predicted | observed |",
        "|---|---|---|---|",
    ]
    for i, b in enumerate(m["calibration_by_decile"], start=1):
        lines.append(f"| {i} | {int(b['n'])} | {_f(b['mean_predicted'])} | {_f(b['observed'])} |")
    lines += ["", f"![Calibration plot]({doc['plots']['calibration']})", "", "## Subgroups", ""]
    if "subgroups" in m:
        lines += ["| subgroup | level | n | events | AUC (95% CI) |", "|---|---|---|---|---|"]
        for var, table in m["subgroups"].items():
            if isinstance(table, str):
                lines.append(f"| {var} | – | – | – | {table} |")
                continue
            for level, e in table.items():
                value = (
                    f"{_f(e['auc'])} ({_ci(e['auc_ci95'])})" if e["auc"] is not None else e["note"]
                )
                lines.append(f"| {var} | {level} | {e['n']} | {e['events']} | {value} |")
    else:
        lines.append("No subgroup variables are recorded for this model; the source reports none.")
    if "odds_ratios" in m:
        lines += [
            "",
            "## Odds ratios in the published units",
            "",
            "| predictor | per | fitted OR (Wald 95% CI, training split) | published OR (95% CI) "
            "| fitted inside published CI |",
            "|---|---|---|---|---|",
        ]
        for o in m["odds_ratios"]:
            lines.append(
                f"| `{o['feature']}` | {o['per']} | {_f(o['fitted'])} ({_ci(o['fitted_ci95'])}) | "
                f"{_f(o['published'])} ({_ci(o['published_ci95'])}) | "
                f"{'yes' if o['inside_published_ci'] else 'no'} |"
            )
    lines += [
        "",
        "## Published vs simulated",
        "",
        f"- Published (source: {pub['source']}):",
    ]
    for key, value in pub["figures"].items():
        lines.append(f"  - {key}: {json.dumps(value)}")
    lines += [
        f"- This model: {doc['provenance']['this_model']}.",
        "- Inferred (not stated in the sources): " + "; ".join(doc["provenance"]["inferred"]) + ".",
        "",
        "## Limits",
        "",
        doc["limits"],
        "",
        "## Self-tests",
        "",
        f"The manifest carries {len(doc['self_tests'])} held-out patients with the probability "
        "scikit-learn's `predict_proba` gives them; the service refuses to serve the artifact "
        "unless its linear form reproduces each to 1e-9.",
        "",
    ]
    return "\n".join(lines)
