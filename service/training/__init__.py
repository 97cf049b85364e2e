"""Offline training command for the reference models (``ecmo-train`` / ``python -m service.training``).

Never imported by the app. Modules, one job each:

    kinds/        one module per model kind (weaning.py, ich.py): simulation recipe, CSV mapping,
                  outcome and predictor definitions, risk bands and their sources, published
                  figures and citations; registered in kinds/__init__.py's TRAINING_KINDS
    simulate.py   a kind's recipe (docs/CLINICAL.md, seeded) drawn into a Cohort
    cohort.py     a cohort in canonical units: hospital CSV reading/writing, row checks through
                  service.core.inputs.resolve (the service's own bounds), the held-out split
    fit.py        the Pipeline (StandardScaler + unpenalised LogisticRegression) and its ORs
    metrics.py    evaluation: AUC, Brier, calibration with CIs, Wilson intervals, cut-off and
                  band tables, decision curves, subgroups
    train.py      one training run end to end (held-out split or bootstrap optimism correction,
                  EPV); writes a version directory atomically
    manifest.py   manifest.json for a trained version
    provenance.py runtime versions, published sources, method references
    card.py       MODEL_CARD.md, rendered from the manifest alone
    plots.py      roc.png and calibration.png (matplotlib, Agg); the only matplotlib importer
    validate.py   site validation of a served version on a local cohort, and recalibration
    report.py     the validation report: JSON numbers and a self-contained HTML page
    __main__.py   the training command line
"""
