"""Offline training command for the reference models (``ecmo-train`` / ``python -m service.training``).

Never imported by the app. Modules, one job each:

    simulate.py   the derivation-cohort recipes of CLINICAL.md (seeded)
    cohort.py     a cohort in canonical units: hospital CSV reading/writing, row checks through
                  service.core.inputs.resolve (the service's own bounds), the held-out split
    fit.py        the Pipeline (StandardScaler + unpenalised LogisticRegression) and its ORs
    metrics.py    held-out evaluation: AUC + bootstrap CI, Brier, calibration, subgroups
    published.py  the published figures each model is compared with, and their sources
    card.py       manifest.json and MODEL_CARD.md
    plots.py      roc.png and calibration.png (matplotlib, Agg); the only matplotlib importer
    train.py      one training run end to end; writes a version directory atomically
    __main__.py   the command line
"""
