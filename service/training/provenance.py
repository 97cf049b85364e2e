"""Where a version comes from: the runtime that wrote it, the publications it reproduces, the
methods it was judged with, and what was inferred rather than published."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import sklearn

from service.training import kinds
from service.training.kinds.base import Citation

if TYPE_CHECKING:
    from service.training.train import TrainingRun

CLINICAL_DOC = "docs/CLINICAL.md"
"""The repository file with the clinical facts, recipes and their sources."""

METHOD_REFERENCES = (
    Citation(
        "Collins GS, Reitsma JB, Altman DG, Moons KGM. Transparent reporting of a multivariable "
        "prediction model for individual prognosis or diagnosis (TRIPOD): the TRIPOD statement. "
        "BMJ. 2015;350:g7594",
        doi="10.1136/bmj.g7594",
    ),
    Citation(
        "Harrell FE Jr, Lee KL, Mark DB. Multivariable prognostic models: issues in developing "
        "models, evaluating assumptions and adequacy, and measuring and reducing errors. Stat Med. "
        "1996;15(4):361-387",
        doi="10.1002/(SICI)1097-0258(19960229)15:4<361::AID-SIM168>3.0.CO;2-4",
    ),
    Citation(
        "Peduzzi P, Concato J, Kemper E, Holford TR, Feinstein AR. A simulation study of the "
        "number of events per variable in logistic regression analysis. J Clin Epidemiol. "
        "1996;49(12):1373-1379",
        doi="10.1016/S0895-4356(96)00236-3",
    ),
    Citation(
        "Collins GS, Ogundimu EO, Altman DG. Sample size considerations for the external "
        "validation of a multivariable prognostic model: a resampling study. Stat Med. "
        "2016;35(2):214-226",
        doi="10.1002/sim.6787",
    ),
    Citation(
        "Wilson EB. Probable inference, the law of succession, and statistical inference. J Am "
        "Stat Assoc. 1927;22(158):209-212",
        doi="10.1080/01621459.1927.10502953",
    ),
)


def runtime() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def references(kind_name: str) -> list[str]:
    tk = kinds.of(kind_name)
    return [c.render() for c in (*tk.sources, *METHOD_REFERENCES)]


def provenance(run: TrainingRun) -> dict[str, Any]:
    tk = kinds.of(run.kind)
    if run.source.kind == "simulate":
        derivation = (
            f"simulated with the recipe in {CLINICAL_DOC} (seeded); no patient-level data was used"
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
    return {
        "published": {"source": tk.sources[0].render(), "figures": tk.published_figures},
        "derivation_cohort": derivation,
        "this_model": fitted,
        "inferred": list(tk.inferred),
        "clinical_facts": CLINICAL_DOC,
    }
