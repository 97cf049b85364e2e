"""The reference derivation cohorts, drawn exactly as the recipes in docs/CLINICAL.md say.

Each kind's recipe lives in its module under service.training.kinds; here the draw becomes a
Cohort through cohort.build, i.e. through service.core.inputs.resolve, like a hospital CSV's.
"""

from __future__ import annotations

import numpy as np

from service.core.kinds import MODEL_KINDS
from service.core.kinds.base import ModelKind
from service.training import kinds
from service.training.cohort import Cohort, build
from service.training.kinds.base import Simulated

DEFAULT_N = 20_000
DEFAULT_SEED = 7


def to_cohort(kind: ModelKind, drawn: Simulated) -> Cohort:
    return build(
        kind, drawn.columns, drawn.outcome, drawn.subgroups, source=f"simulated {kind.name} cohort"
    )


def simulate(kind: ModelKind, n: int, rng: np.random.Generator, shift: float = 0.0) -> Cohort:
    return to_cohort(kind, kinds.of(kind).recipe(n, rng, shift))


EXAMPLE_KIND = "ich"
EXAMPLE_N = 1000
EXAMPLE_SHIFT = 0.5
EXAMPLE_SEEDS = (101, 102)
"""The shipped example validation cohorts (examples/): a simulated site whose baseline ICH risk is
0.5 log-odds above the source's, in two periods (a cohort to validate and recalibrate on, and a
later one to accept the recalibrated version on)."""


def example_site_cohort(period: int) -> Cohort:
    """Period 1 or 2 of the example site (seeded; write_csv gives the shipped files exactly)."""
    rng = np.random.default_rng(EXAMPLE_SEEDS[period - 1])
    return simulate(MODEL_KINDS[EXAMPLE_KIND], EXAMPLE_N, rng, EXAMPLE_SHIFT)
