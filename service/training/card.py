"""MODEL_CARD.md, rendered from a version's manifest document alone (so they never disagree).

The card follows TRIPOD's headings (source of data, outcome, predictors, model, performance,
calibration, subgroups, limitations) and says which numbers are published and which simulated.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(pair: list[float], digits: int = 3) -> str:
    return f"{_f(pair[0], digits)}–{_f(pair[1], digits)}"


def _g(x: float) -> str:
    return f"{x:.4g}"


def _band_interval(b: dict[str, Any]) -> str:
    return f"[{b['lower']}, {b['upper']}{']' if b['upper'] == 1.0 else ')'}"


def _evaluated(m: dict[str, Any]) -> str:
    return str(m.get("evaluated_on", "held-out split"))


def _header(doc: dict[str, Any]) -> list[str]:
    rt = doc["runtime"]
    return [
        f"# Model card: {doc['name']} {doc['version']}",
        "",
        f"> **{doc['label'][0].upper() + doc['label'][1:]}.**",
        "",
        f"Outcome: {doc['outcome']}. Created {doc['created']}. Artifact `{doc['artifact']['file']}` "
        f"(sha256 `{doc['artifact']['sha256']}`), scikit-learn {rt['scikit_learn']}, "
        f"numpy {rt['numpy']}, joblib {rt['joblib']}, Python {rt['python']}.",
        "",
    ]


def _warnings(doc: dict[str, Any]) -> list[str]:
    if not doc.get("warnings"):
        return []
    lines = ["## Warnings", ""]
    lines += [f"- **{w}**" for w in doc["warnings"]]
    return [*lines, ""]


def _site(doc: dict[str, Any]) -> list[str]:
    recal = doc.get("recalibration")
    site = doc.get("site_validation")
    if recal is None and site is None:
        return []
    lines = ["## Site recalibration and validation", ""]
    if recal is not None:
        lines += [
            f"This version is version {doc['parent_version']} recalibrated on a local cohort "
            f"(logistic recalibration, method `{recal['method']}`): new log-odds = "
            f"{_g(recal['a'])} + {_g(recal['b'])} x log-odds of {doc['parent_version']}. "
            f"Cohort sha256 `{recal['cohort_sha256']}`, n = {recal['n']}, "
            f"{recal['events']} events. Everything else (predictors, bounds, derivation "
            f"data, the sections below) is the parent's; the coefficients and self-tests are "
            "this version's. Validation of the parent on that cohort, before recalibration: "
            f"AUC {_f(recal['parent_validation']['auc'])}, calibration-in-the-large "
            f"{_f(recal['parent_validation']['calibration_intercept'])}, slope "
            f"{_f(recal['parent_validation']['calibration_slope'])}.",
            "",
        ]
    if site is not None:
        lines.append(
            f"Site validation status: **{site['status']}**"
            + (
                f" (n = {site['n']}, {site['events']} events, AUC {_f(site['auc'])}, "
                f"calibration slope {_f(site['calibration_slope'])}, {site['date']}; report "
                f"`{site['report']}`)."
                if site["status"] != "not_run"
                else ": not validated yet. Review the validation report, then run "
                "`ecmo-validate ... --accept` on an independent local cohort; the service "
                "makes this version the default only when it is pinned or has passed."
            )
        )
        lines.append("")
    return lines


def _data(doc: dict[str, Any]) -> list[str]:
    t = doc["training"]
    m = doc["metrics"]
    split = t["split"]
    if m.get("validation", "split") == "split":
        design = (
            f"{split['method']}: {split['n_train']} for fitting, {split['n_held_out']} held out "
            f"(fraction {split['test_fraction']}). Every metric below is on the held-out split."
        )
        prevalence = (
            f"- Held-out prevalence {_f(m['prevalence'])} ({m['events']}/{m['n']}); "
            f"training prevalence {_f(m['training_split']['prevalence'])}."
        )
    else:
        design = (
            f"{split['method']}. Every metric below is on the whole cohort, corrected for "
            f"optimism with {m['optimism']['replicates']} bootstrap refits."
        )
        prevalence = f"- Prevalence {_f(m['prevalence'])} ({m['events']}/{m['n']})."
    epv = m.get("events_per_predictor")
    lines = [
        "## Data",
        "",
        f"- Source: {doc['provenance']['derivation_cohort']}.",
        f"- n = {t['n']} (seed {t['seed']}); {design}",
        prevalence,
    ]
    if epv is not None:
        lines.append(
            f"- Events per predictor (smaller outcome class / predictor parameters): "
            f"{epv['value']:.1f} ({epv['smaller_class_count']}/{epv['predictor_parameters']}); "
            f"the command warns below {epv['warning_below']:g}."
        )
    if "evaluation" in t:
        lines.append(f"- Evaluation policy: {t['evaluation']['policy']}.")
    lines += [f"- Reproduce: `{t['command']}`.", ""]
    return lines


def _outcome_and_predictors(doc: dict[str, Any]) -> list[str]:
    lines = ["## Outcome", "", doc.get("outcome_definition", doc["outcome"]), ""]
    lines += [
        "## Predictors",
        "",
        "### As measured (the CSV columns and API inputs): definition and measurement window",
        "",
        "| input | definition | measurement window |",
        "|---|---|---|",
    ]
    for p in doc.get("predictors", []):
        lines.append(f"| `{p['name']}` | {p['definition']} | {p['window']} |")
    lines += [
        "",
        "### Model features (canonical units) and the derivation data's observed range",
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
    for d in doc["derived_features"]:
        window = f" (window: {d['window']})" if "window" in d else ""
        lines.append(f"- `{d['name']}`: {d['definition']}{window}")
    lines += [
        "",
        "Inputs outside the derivation range are extrapolations; the service warns when it happens.",
        "",
    ]
    return lines


def _model(doc: dict[str, Any]) -> list[str]:
    lines = [
        "## Model",
        "",
        f"{doc['model']['type']}.",
        "",
        "| term | log-odds per unit | odds ratio per unit |",
        "|---|---|---|",
        f"| intercept | {_g(doc['model']['intercept_log_odds'])} | |",
    ]
    for feat, w in doc["model"]["coefficients_log_odds_per_unit"].items():
        lines.append(f"| `{feat}` | {_g(w)} | {_g(math.exp(w))} |")
    ref = doc.get("reference_patient")
    if ref is not None:
        values = ", ".join(f"`{k}` {_g(v)}" for k, v in ref["features"].items())
        lines += [
            "",
            f"Reference patient for contributions: {values}; log-odds {_g(ref['log_odds'])}, "
            f"probability {_f(ref['probability'])}. {ref['definition']}",
        ]
    lines += [
        "",
        "### Risk bands (probability of the outcome) and where each cut-off comes from",
        "",
    ]
    for b in doc["risk_bands"]:
        source = f" Cut-off: {b['cutoff_source']}." if "cutoff_source" in b else ""
        lines.append(
            f"- **{b['name']}** {_band_interval(b)} (CDS indicator `{b['cds_indicator']}`): "
            f"{b['description']}{source}"
        )
    m = doc["metrics"]
    if "risk_band_cutoffs" in m:
        lines += [
            "",
            f"Each cut-off on the derivation data ({_evaluated(m)}; 'positive' = at or above "
            "the cut-off):",
            "",
            "| cut-off | n at or above | sensitivity | specificity | PPV | NPV |",
            "|---|---|---|---|---|---|",
        ]
        for c in m["risk_band_cutoffs"]:
            lines.append(
                f"| {c['cutoff']} | {c['n_at_or_above']} | {_f(c['sensitivity'])} | "
                f"{_f(c['specificity'])} | {_f(c['ppv'])} | {_f(c['npv'])} |"
            )
        lines += [
            "",
            "| band | n | events | observed (Wilson 95% CI) | mean predicted |",
            "|---|---|---|---|---|",
        ]
        for b in m["risk_bands"]:
            lines.append(
                f"| {b['band']} | {b['n']} | {b['events']} | {_f(b['observed'])} "
                f"({_ci(b['observed_ci95'])}) | {_f(b['mean_predicted'])} |"
            )
    return [*lines, ""]


def _performance(doc: dict[str, Any]) -> list[str]:
    m = doc["metrics"]
    where = _evaluated(m)
    lines = [
        f"## Performance ({where})",
        "",
        "| metric | value |",
        "|---|---|",
        f"| AUC (bootstrap 95% CI, {m['bootstrap_replicates']} replicates) | "
        f"{_f(m['auc'])} ({_ci(m['auc_ci95'])}) |",
    ]
    for value in m.values():
        if isinstance(value, dict) and "label" in value and "auc" in value:
            lines.append(
                f"| AUC of {value['label']} | {_f(value['auc'])} ({_ci(value['auc_ci95'])}) |"
            )
    brier_ci = f" ({_ci(m['brier_ci95'], 4)})" if "brier_ci95" in m else ""
    lines += [
        f"| Brier score (bootstrap 95% CI) | {_f(m['brier'], 4)}{brier_ci} |",
        f"| prevalence | {_f(m['prevalence'])} |",
        f"| apparent AUC on the fitting data | {_f(m['training_split']['apparent_auc'])} |",
    ]
    if "optimism" in m:
        o = m["optimism"]
        lines.append(
            f"| optimism (mean over {o['replicates']} refits) | AUC {_f(o['auc'])}, Brier "
            f"{_f(o['brier'], 4)}, slope {_f(o['calibration_slope'])} |"
        )
    lines += ["", f"![ROC curve]({doc['plots']['roc']})", ""]
    return lines


def _calibration(doc: dict[str, Any]) -> list[str]:
    m = doc["metrics"]

    def ci(key: str) -> str:
        return f" (95% CI {_ci(m[key])})" if key in m else ""

    lines = [
        f"## Calibration ({_evaluated(m)})",
        "",
        f"- Calibration intercept (calibration-in-the-large, logit(p) as offset): "
        f"{_f(m['calibration_intercept'])}{ci('calibration_intercept_ci95')} (ideal 0).",
        f"- Calibration slope: {_f(m['calibration_slope'])}{ci('calibration_slope_ci95')} "
        "(ideal 1).",
        "",
        "| decile | n | events | mean predicted | observed (Wilson 95% CI) |",
        "|---|---|---|---|---|",
    ]
    for i, b in enumerate(m["calibration_by_decile"], start=1):
        interval = f" ({_ci(b['observed_ci95'])})" if "observed_ci95" in b else ""
        events = b.get("events", "–")
        lines.append(
            f"| {i} | {int(b['n'])} | {events} | {_f(b['mean_predicted'])} | "
            f"{_f(b['observed'])}{interval} |"
        )
    lines += ["", f"![Calibration plot]({doc['plots']['calibration']})", ""]
    return lines


def _subgroups(doc: dict[str, Any]) -> list[str]:
    m = doc["metrics"]
    lines = ["## Subgroups", ""]
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
            "| predictor | per | fitted OR (Wald 95% CI, fitting data) | published OR (95% CI) "
            "| fitted inside published CI |",
            "|---|---|---|---|---|",
        ]
        for o in m["odds_ratios"]:
            lines.append(
                f"| `{o['feature']}` | {o['per']} | {_f(o['fitted'])} ({_ci(o['fitted_ci95'])}) | "
                f"{_f(o['published'])} ({_ci(o['published_ci95'])}) | "
                f"{'yes' if o['inside_published_ci'] else 'no'} |"
            )
    return [*lines, ""]


def _provenance(doc: dict[str, Any]) -> list[str]:
    prov = doc["provenance"]
    pub = prov["published"]
    lines = ["## Published vs simulated", "", f"- Published (source: {pub['source']}):"]
    for key, value in pub["figures"].items():
        lines.append(f"  - {key}: {json.dumps(value)}")
    lines += [
        f"- This model: {prov['this_model']}.",
        "- Inferred (not stated in the sources): " + "; ".join(prov["inferred"]) + ".",
    ]
    if "clinical_facts" in prov:
        lines.append(
            f"- The clinical facts, the simulation recipe and what was inferred are in "
            f"`{prov['clinical_facts']}` in the service's repository."
        )
    return [*lines, ""]


def render(doc: dict[str, Any]) -> str:
    lines = _header(doc)
    lines += _warnings(doc)
    lines += _site(doc)
    lines += ["## Intended use", "", doc["intended_use"], ""]
    lines += _data(doc)
    lines += _outcome_and_predictors(doc)
    lines += _model(doc)
    lines += _performance(doc)
    lines += _calibration(doc)
    lines += _subgroups(doc)
    lines += _provenance(doc)
    lines += ["## Limits", "", doc["limits"], ""]
    if doc.get("references"):
        lines += ["## References", ""]
        lines += [f"{i}. {r}" for i, r in enumerate(doc["references"], start=1)]
        lines.append("")
    lines += [
        "## Self-tests",
        "",
        f"The manifest carries {len(doc['self_tests'])} patients with the probability "
        "scikit-learn's `predict_proba` gives them; the service refuses to serve the artifact "
        "unless its linear form reproduces each to 1e-9.",
        "",
    ]
    return "\n".join(lines)
