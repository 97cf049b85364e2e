"""ich: intracranial hemorrhage during adult ECMO (docs/CLINICAL.md section 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.kinds import ICH
from service.training.kinds.base import (
    Citation,
    FloatArray,
    Predictor,
    PublishedOR,
    RiskBandSpec,
    Simulated,
    TrainingKind,
)

SOURCE = Citation(
    "Zhu et al. World J Emerg Med. 2025;16(2):153-160: risk factors and a logistic model of "
    "intracranial hemorrhage in 227 adults on ECMO for at least 24 h (22 ICH). The figures used "
    "are the abstract's; the full author list, title and full text could not be obtained",
    doi="10.5847/wjem.j.1920-8642.2025.037",
)

PUBLISHED_ORS = (
    PublishedOR("gwr", "0.01 (GWR x 100)", 0.01, 0.894, (0.841, 0.951)),
    PublishedOR("stroke_history", "yes vs no", 1.0, 4.265, (1.052, 17.291)),
    PublishedOR("ffp_volume_ml", "100 mL", 100.0, 1.208, (1.037, 1.408)),
    PublishedOR("min_platelets", "1x10^9/L", 1.0, 0.977, (0.958, 0.996)),
)

INTERCEPT = 12.509
"""The recipe's intercept, tuned to the published 22/227."""


def _expit(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def true_logit(
    gwr: FloatArray,
    stroke: FloatArray,
    ffp_ml: FloatArray,
    platelets: FloatArray,
) -> FloatArray:
    """The recipe's true outcome model (slopes are the published log-ORs)."""
    return (
        INTERCEPT
        - 0.11205 * (100.0 * gwr)
        + 1.45044 * stroke
        + 0.18897 * (ffp_ml / 100.0)
        - 0.023269 * platelets
    )


def recipe(n: int, rng: np.random.Generator, shift: float = 0.0) -> Simulated:
    """docs/CLINICAL.md section 2. A non-zero `shift` (log-odds) draws a site whose baseline
    risk differs from the source's, as the shipped example validation cohorts do."""
    gwr = np.clip(rng.normal(1.28, 0.097, n), 0.95, 1.60)
    platelets = np.clip(np.exp(np.log(75.0) + 0.52 * rng.standard_normal(n)), 3, 600)
    no_ffp = rng.random(n) < 0.25
    ffp = np.minimum(np.exp(np.log(350.0) + 0.60 * rng.standard_normal(n)), 15_000.0)
    ffp = np.where(no_ffp, 0.0, ffp)
    stroke = (rng.random(n) < 0.08).astype(np.float64)
    p = _expit(true_logit(gwr, stroke, ffp, platelets) + shift)
    ich = (rng.random(n) < p).astype(np.int64)
    return Simulated(
        {"gwr": gwr, "stroke_history": stroke, "ffp_volume_ml": ffp, "min_platelets": platelets},
        ich,
    )


def api_inputs(row: Mapping[str, float]) -> dict[str, Any]:
    return {
        "gwr": row["gwr"],
        "stroke_history": bool(row["stroke_history"]),
        "ffp_volume": {"value": row["ffp_volume_ml"], "unit": "mL"},
        "min_platelets": {"value": row["min_platelets"], "unit": "10*9/L"},
    }


KIND = TrainingKind(
    model=ICH,
    recipe=recipe,
    api_inputs=api_inputs,
    integer_columns=frozenset({"stroke_history"}),
    boolean_columns=frozenset({"stroke_history"}),
    outcome_definition=(
        "ich = 1: intracranial hemorrhage diagnosed on head CT during ECMO, in adults on ECMO for "
        "at least 24 h without ICH before ECMO (the source's inclusion criteria)."
    ),
    predictors=(
        Predictor(
            "gwr",
            "grey-white matter ratio: grey-matter / white-matter Hounsfield units on non-contrast "
            "head CT at basal-ganglia level (normal about 1.32; scanner dependent)",
            "not stated in the source abstract; inferred: the first head CT after ECMO start and "
            "before any ICH",
        ),
        Predictor(
            "stroke_history",
            "history of stroke before ECMO (yes/no)",
            "any time before ECMO start",
        ),
        Predictor(
            "ffp_volume_ml",
            "total volume of fresh frozen plasma transfused, mL",
            "unknown in the source (the time window of the total is not published); inferred: "
            "cumulative from ECMO start to the time of prediction",
        ),
        Predictor(
            "min_platelets",
            "minimum platelet count, x10^9/L",
            "the lowest value from ECMO start to the time of prediction",
        ),
    ),
    derived_features=(
        Predictor(
            "gwr",
            "when given as Hounsfield units: grey-matter HU / white-matter HU on non-contrast "
            "head CT at basal-ganglia level",
            "the same CT",
        ),
    ),
    risk_bands=(
        RiskBandSpec(
            "low",
            0.0,
            0.05,
            "info",
            "Low probability of intracranial hemorrhage during ECMO.",
            "0 (the scale's floor)",
        ),
        RiskBandSpec(
            "intermediate",
            0.05,
            0.15,
            "warning",
            "Intermediate probability of ICH: review anticoagulation and transfusion.",
            "design choice of this service, not published: about half the published ICH "
            "proportion (9.7 %)",
        ),
        RiskBandSpec(
            "high",
            0.15,
            1.0,
            "critical",
            "High probability of ICH: consider neuro-imaging and bleeding-risk review.",
            "design choice of this service, not published: about 1.5 times the published ICH "
            "proportion (9.7 %)",
        ),
    ),
    intended_use=(
        "Estimate the probability of intracranial hemorrhage in adults on ECMO for at least 24 h "
        "without ICH before ECMO, to support bleeding-risk review."
    ),
    limits_simulated=(
        "Reference model fitted on simulated data; not for clinical decisions. The cohort is "
        "simulated with the published odds ratios of one study of 227 patients (22 events); the "
        "units of the ORs were inferred from their CI widths (FFP per 100 mL could be per 200 mL; "
        "the FFP time window is unknown); GWR is scanner dependent. Not validated externally."
    ),
    sources=(SOURCE,),
    published_figures={
        "n": 227,
        "events": 22,
        "prevalence": 22 / 227,
        "auc": 0.843,
        "auc_ci95": [0.762, 0.924],
        "odds_ratios": {
            o.feature: {"per": o.per, "odds_ratio": o.odds_ratio, "ci95": list(o.ci95)}
            for o in PUBLISHED_ORS
        },
    },
    inferred=(
        "OR units: GWR per 0.01, FFP per 100 mL (per 200 mL not excluded), platelets per 1x10^9/L",
    ),
    decision_thresholds=(0.01, 0.40),
    published_ors=PUBLISHED_ORS,
)
