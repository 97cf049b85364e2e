"""The model: StandardScaler + unpenalised LogisticRegression, and what can be read off it.

Coefficients are reported per canonical unit (w_i = coef_i / scale_i), the same numbers
core.linear derives, so contributions stay exact and additive in log-odds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from service.training.cohort import FloatArray, IntArray


def fit(x: FloatArray, y: IntArray, feature_names: Sequence[str]) -> Any:
    """Fit on a numpy matrix, then record the feature names the registry checks.

    C=inf is an unpenalised fit (the `penalty` parameter is deprecated in scikit-learn 1.9), so the
    coefficients are maximum-likelihood estimates comparable with published odds ratios. The
    tolerance is tight so the ORs do not depend on where lbfgs happened to stop.
    """
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(C=np.inf, solver="lbfgs", tol=1e-10, max_iter=10_000)),
        ]
    )
    model.fit(x, y)
    model.steps[0][1].feature_names_in_ = np.array(list(feature_names), dtype=object)
    return model


def predict_proba(model: Any, x: FloatArray) -> FloatArray:
    """sklearn's own probability of the event (class 1), the reference the linear form must match."""
    with warnings.catch_warnings():
        # The scaler records feature names for the registry's order check; numpy input is fine.
        warnings.filterwarnings(
            "ignore", message="X does not have valid feature names", category=UserWarning
        )
        p = model.predict_proba(x)
    return np.asarray(p[:, 1], dtype=np.float64)


@dataclass(frozen=True)
class Coefficients:
    intercept: float
    """log-odds at x = 0 in canonical units"""
    weights: tuple[float, ...]
    """log-odds per canonical unit"""
    standard_errors: tuple[float, ...]
    """Wald standard errors of the weights on the training data"""


def coefficients(model: Any, x: FloatArray) -> Coefficients:
    scaler, clf = model.steps[0][1], model.steps[1][1]
    mean = np.asarray(scaler.mean_, dtype=np.float64)
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    coef = np.asarray(clf.coef_[0], dtype=np.float64)
    weights = coef / scale
    intercept = float(clf.intercept_[0]) - float(np.dot(weights, mean))
    # Fisher information in the scaled space (well conditioned), then back to canonical units.
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    p = predict_proba(model, x)
    info = z.T @ (z * (p * (1.0 - p))[:, None])
    cov = np.linalg.inv(info)
    se = np.sqrt(np.diag(cov)[1:]) / scale
    return Coefficients(intercept, tuple(float(w) for w in weights), tuple(float(s) for s in se))
