"""The reference derivation cohorts, drawn exactly as the recipes in docs/CLINICAL.md say.

Each kind's recipe lives in its module under service.training.kinds; here the draw becomes a
Cohort through cohort.build, i.e. through service.core.inputs.resolve, like a hospital CSV's.
"""

from __future__ import annotations

import numpy as np

from service.core.specs import ModelKind
from service.training import kinds
from service.training.cohort import Cohort, build
from service.training.kinds.base import Simulated

DEFAULT_N = 20_000
DEFAULT_SEED = 7


def to_cohort(kind: ModelKind, drawn: Simulated) -> Cohort:
    return build(
        kind, drawn.columns, drawn.outcome, drawn.subgroups, source=f"simulated {kind.name} cohort"
    )


def simulate(kind: ModelKind, n: int, rng: np.random.Generator) -> Cohort:
    return to_cohort(kind, kinds.of(kind).recipe(n, rng))
