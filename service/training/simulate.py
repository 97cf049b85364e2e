"""The reference derivation cohorts, drawn exactly as the recipes in CLINICAL.md say.

Seeded and vectorised. The generated columns are the CSV columns in canonical units; the feature
vectors come from cohort.build, i.e. from service.core.inputs.resolve, like a hospital CSV's.
Each epsilon in the recipe is its own standard-normal draw, in the order written below.
"""

from __future__ import annotations

import numpy as np

from service.core.specs import ICH, WEANING, ModelKind
from service.training.cohort import ETIOLOGIES, Cohort, FloatArray, build

DEFAULT_N = 20_000
DEFAULT_SEED = 7


def _expit(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def weaning_logit(
    vrr: FloatArray, apache: FloatArray, vis_24h: FloatArray, lac_24h: FloatArray
) -> FloatArray:
    """The recipe's true outcome model (slopes are design choices, intercept tuned to 56 %)."""
    return 1.673 + 1.25 * vrr - 0.045 * apache - 0.010 * vis_24h - 0.080 * lac_24h


def ich_logit(
    gwr: FloatArray, stroke: FloatArray, ffp_ml: FloatArray, platelets: FloatArray
) -> FloatArray:
    """The recipe's true outcome model (slopes are the published log-ORs, intercept tuned to 22/227)."""
    return (
        12.509
        - 0.11205 * (100.0 * gwr)
        + 1.45044 * stroke
        + 0.18897 * (ffp_ml / 100.0)
        - 0.023269 * platelets
    )


def simulate_weaning(n: int, rng: np.random.Generator) -> Cohort:
    ecpr = (rng.random(n) < 0.30).astype(np.int64)
    etiology = rng.choice(np.array(ETIOLOGIES, dtype=object), size=n, p=[0.40, 0.22, 0.38])
    severity = rng.standard_normal(n) + 0.5 * ecpr
    shift = np.where(etiology == "AMI", -0.55, np.where(etiology == "myocarditis", 0.85, 0.0))
    recovery = rng.standard_normal(n) + shift - 0.30 * severity
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
    p = _expit(weaning_logit(vrr, apache, vis_24h, lac_24h))
    weaned = (rng.random(n) < p).astype(np.int64)
    columns = {"vis_0h": vis_0h, "vis_24h": vis_24h, "apache_ii": apache, "lactate_24h": lac_24h}
    subgroups = {"etiology": etiology, "ecpr": ecpr, "crrt": crrt}
    return build(WEANING, columns, weaned, subgroups, source="simulated weaning cohort")


def simulate_ich(n: int, rng: np.random.Generator) -> Cohort:
    gwr = np.clip(rng.normal(1.28, 0.097, n), 0.95, 1.60)
    platelets = np.clip(np.exp(np.log(75.0) + 0.52 * rng.standard_normal(n)), 3, 600)
    no_ffp = rng.random(n) < 0.25
    ffp = np.minimum(np.exp(np.log(350.0) + 0.60 * rng.standard_normal(n)), 15_000.0)
    ffp = np.where(no_ffp, 0.0, ffp)
    stroke = (rng.random(n) < 0.08).astype(np.float64)
    p = _expit(ich_logit(gwr, stroke, ffp, platelets))
    ich = (rng.random(n) < p).astype(np.int64)
    columns = {
        "gwr": gwr,
        "stroke_history": stroke,
        "ffp_volume_ml": ffp,
        "min_platelets": platelets,
    }
    return build(ICH, columns, ich, source="simulated ich cohort")


def simulate(kind: ModelKind, n: int, rng: np.random.Generator) -> Cohort:
    if kind.name == "weaning":
        return simulate_weaning(n, rng)
    if kind.name == "ich":
        return simulate_ich(n, rng)
    raise ValueError(f"no simulation recipe for model kind {kind.name!r}")
