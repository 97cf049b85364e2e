"""weaning: successful weaning from VA-ECMO in adult cardiogenic shock (docs/CLINICAL.md section 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.kinds import WEANING
from service.training.kinds.base import (
    Citation,
    Comparator,
    FloatArray,
    Predictor,
    RiskBandSpec,
    Simulated,
    Subgroup,
    TrainingKind,
)

ETIOLOGIES = ("AMI", "myocarditis", "other")

SOURCE = Citation(
    "Retrospective single-centre cohort of VA-ECMO for cardiogenic shock: 495 screened, 150 "
    "included, 84 weaned. Journal abstract at cbyxyxb.journalai.cn, article 2601010 (authors, "
    "title and full text could not be obtained; the figures used are the abstract's)"
)
GAIES_2010 = Citation(
    "Gaies MG, Gurney JG, Yen AH, et al. Vasoactive-inotropic score as a predictor of morbidity "
    "and mortality in infants after cardiopulmonary bypass. Pediatr Crit Care Med. "
    "2010;11(2):234-238",
    doi="10.1097/PCC.0b013e3181b806fc",
)
KNAUS_1985 = Citation(
    "Knaus WA, Draper EA, Wagner DP, Zimmerman JE. APACHE II: a severity of disease "
    "classification system. Crit Care Med. 1985;13(10):818-829"
)


def _expit(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def true_logit(
    vrr: FloatArray, apache: FloatArray, vis_24h: FloatArray, lac_24h: FloatArray
) -> FloatArray:
    """The recipe's true outcome model (slopes are design choices, intercept tuned to 56 %)."""
    return 1.673 + 1.25 * vrr - 0.045 * apache - 0.010 * vis_24h - 0.080 * lac_24h


def recipe(n: int, rng: np.random.Generator, shift: float = 0.0) -> Simulated:
    """docs/CLINICAL.md section 1; each epsilon is its own standard-normal draw, in this order.
    A non-zero `shift` (log-odds) draws a site whose baseline chance of weaning differs."""
    ecpr = (rng.random(n) < 0.30).astype(np.int64)
    etiology = rng.choice(np.array(ETIOLOGIES, dtype=object), size=n, p=[0.40, 0.22, 0.38])
    severity = rng.standard_normal(n) + 0.5 * ecpr
    by_etiology = np.where(etiology == "AMI", -0.55, np.where(etiology == "myocarditis", 0.85, 0.0))
    recovery = rng.standard_normal(n) + by_etiology - 0.30 * severity
    apache = np.clip(np.round(20.0 + 5.5 * severity + 3.5 * rng.standard_normal(n)), 0, 71)
    lac_0h = np.clip(np.exp(np.log(6.0) + 0.45 * severity + 0.35 * rng.standard_normal(n)), 0.3, 30)
    vis_0h = np.clip(np.exp(np.log(35.0) + 0.35 * severity + 0.8 * rng.standard_normal(n)), 1, 500)
    vis_24h = vis_0h * np.exp(-0.6 - 0.75 * recovery + 0.45 * rng.standard_normal(n))
    vis_24h = np.minimum(np.where(vis_24h < 1.0, 0.0, vis_24h), 500.0)
    lac_24h = np.clip(
        lac_0h * np.exp(-0.8 - 0.30 * recovery + 0.25 * severity + 0.35 * rng.standard_normal(n)),
        0.3,
        30,
    )
    crrt = (rng.random(n) < _expit(-1.1 + 1.4 * severity - 0.9 * recovery)).astype(np.int64)
    # The outcome uses the model feature: VRR winsorised to [-1, 1], as resolve() derives it.
    vrr = np.clip((vis_0h - vis_24h) / vis_0h, -1.0, 1.0)
    p = _expit(true_logit(vrr, apache, vis_24h, lac_24h) + shift)
    weaned = (rng.random(n) < p).astype(np.int64)
    return Simulated(
        {"vis_0h": vis_0h, "vis_24h": vis_24h, "apache_ii": apache, "lactate_24h": lac_24h},
        weaned,
        {"etiology": etiology, "ecpr": ecpr, "crrt": crrt},
    )


def api_inputs(row: Mapping[str, float]) -> dict[str, Any]:
    return {
        "vis_0h": row["vis_0h"],
        "vis_24h": row["vis_24h"],
        "apache_ii": row["apache_ii"],
        "lactate_24h": {"value": row["lactate_24h"], "unit": "mmol/L"},
    }


KIND = TrainingKind(
    model=WEANING,
    recipe=recipe,
    api_inputs=api_inputs,
    integer_columns=frozenset({"apache_ii"}),
    boolean_columns=frozenset(),
    outcome_definition=(
        "weaned = 1: successful weaning from VA-ECMO. The source abstract does not define it; "
        "inferred: decannulation with survival free of mechanical circulatory support for at "
        "least 24-48 h. A site must write down its own definition before it trains or validates."
    ),
    predictors=(
        Predictor(
            "vis_0h",
            f"vasoactive-inotropic score (Gaies 2010) from the infusion rates running at ECMO "
            f"start; ref. {GAIES_2010.render()}",
            "at ECMO start (cannulation); the denominator of the VIS reduction rate",
        ),
        Predictor(
            "vis_24h",
            "vasoactive-inotropic score from the infusion rates running 24 h after ECMO start",
            "24 h after ECMO start (inferred: the paper's combined model uses the 24-h VIS)",
        ),
        Predictor(
            "apache_ii",
            f"APACHE II score, integer 0-71; ref. {KNAUS_1985.render()}",
            "worst values of the first 24 h of ICU admission (the score's own definition; the "
            "source abstract does not state its timing)",
        ),
        Predictor(
            "lactate_24h",
            "blood lactate, mmol/L",
            "24 h after ECMO start (inferred: the paper's combined model uses the 24-h lactate)",
        ),
    ),
    derived_features=(
        Predictor(
            "vrr",
            "(VIS_0h - VIS_24h) / VIS_0h, winsorised to [-1, 1]; VIS_0h = 0 is rejected",
            "from the 0-h and 24-h scores",
        ),
        Predictor(
            "vis_24h",
            "when given as infusions: dopamine + dobutamine + 100 x epinephrine + 10 x milrinone "
            "+ 10000 x vasopressin + 100 x norepinephrine (Gaies 2010; catecholamines and "
            "milrinone in ug/kg/min, vasopressin in U/kg/min; norepinephrine as base: a rate "
            "charted with salt bitartrate_anhydrous is divided by 1.887, bitartrate_monohydrate "
            "by 1.994)",
            "the rates running 24 h after ECMO start",
        ),
    ),
    risk_bands=(
        RiskBandSpec(
            "low",
            0.0,
            0.3,
            "warning",
            "Low probability of successful weaning: weaning trial unlikely to succeed now.",
            "0 (the scale's floor)",
        ),
        RiskBandSpec(
            "intermediate",
            0.3,
            0.6,
            "info",
            "Intermediate probability of successful weaning: reassess over the next day.",
            "design choice of this service, not published: about half the published weaning "
            "rate (56 %)",
        ),
        RiskBandSpec(
            "high",
            0.6,
            1.0,
            "info",
            "High probability of successful weaning: consider a weaning trial.",
            "design choice of this service, not published: just above the published weaning "
            "rate (56 %), so 'high' means better than the average patient of the source",
        ),
    ),
    intended_use=(
        "Estimate the probability of successful weaning from VA-ECMO in adult cardiogenic shock, "
        "24 h after ECMO start, to support (never replace) the weaning decision."
    ),
    limits_simulated=(
        "Reference model fitted on simulated data; not for clinical decisions. The cohort is "
        "simulated from a recipe tuned to the published prevalence and AUCs of one single-centre "
        "study of 150 patients; no published coefficients exist, so the slopes are design choices "
        "constrained only by the published directions. 'VIS' and 'lactate' in the combined model "
        "were inferred to be the 24-h values. Not validated externally."
    ),
    sources=(SOURCE, GAIES_2010, KNAUS_1985),
    published_figures={
        "n": 150,
        "events": 84,
        "prevalence": 84 / 150,
        "auc_combined": 0.820,
        "auc_vrr_alone": 0.780,
        "odds_ratios": "not published (directions only)",
    },
    inferred=("'VIS' and 'lactate' in the published combined model are the 24-h values",),
    decision_thresholds=(0.10, 0.90),
    subgroups=(
        Subgroup(
            "etiology",
            (("AMI", "AMI"), ("myocarditis", "myocarditis"), ("other", "other")),
            ETIOLOGIES,
        ),
        Subgroup("ecpr", (("yes", 1), ("no", 0))),
        Subgroup("crrt", (("yes", 1), ("no", 0))),
    ),
    comparators=(Comparator("vrr_alone", "VRR alone", "vrr"),),
)
