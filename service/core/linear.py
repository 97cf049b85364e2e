"""The fitted Pipeline (StandardScaler + LogisticRegression) as an explicit linear form.

    log-odds(x) = baseline + sum_i w_i * (x_i - mean_i),   w_i = coef_i / scale_i

The scaler's means are the derivation cohort's average patient, so `baseline` is that patient's
log-odds and each term is an exact, additive contribution. Predicting from this form is what makes
a single prediction cheap (no sklearn input validation per call); the registry proves the form
equals the artifact by replaying the manifest's self-tests, whose expected probabilities the
training command computed with sklearn's own predict_proba.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.errors import ArtifactRejected


@dataclass(frozen=True)
class LinearForm:
    baseline: float
    weights: tuple[float, ...]
    means: tuple[float, ...]

    def contributions(self, x: Sequence[float]) -> list[float]:
        return [w * (v - m) for w, v, m in zip(self.weights, x, self.means, strict=True)]


def expit(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


_JUST_ABOVE_0 = math.nextafter(0.0, 1.0)
_JUST_BELOW_1 = math.nextafter(1.0, 0.0)


def bounded_expit(z: float) -> float:
    """expit, never exactly 0 or 1: an answer of certainty has no finite log-odds. Only a log-odds
    beyond about +-37 (which no input inside the derivation range reaches) is held at the nearest
    float inside (0, 1); below that it is expit itself."""
    p = expit(z)
    if p >= 1.0:
        return _JUST_BELOW_1
    if p <= 0.0:
        return _JUST_ABOVE_0
    return p


def from_pipeline(model: Any, feature_names: Sequence[str]) -> LinearForm:
    """Extract the linear form, refusing anything that is not the expected two-step pipeline."""
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list) or len(steps) != 2:
        raise ArtifactRejected(
            "artifact is not a two-step Pipeline (StandardScaler, LogisticRegression)"
        )
    scaler, clf = steps[0][1], steps[1][1]
    if type(scaler).__name__ != "StandardScaler" or type(clf).__name__ != "LogisticRegression":
        raise ArtifactRejected(
            "artifact is not a two-step Pipeline (StandardScaler, LogisticRegression)"
        )
    names = getattr(scaler, "feature_names_in_", None)
    if names is None:
        raise ArtifactRejected("artifact does not record its feature names")
    if [str(n) for n in names] != list(feature_names):
        raise ArtifactRejected(
            f"artifact feature order {list(map(str, names))} does not match the manifest {list(feature_names)}"
        )
    classes = [int(c) for c in clf.classes_]
    if classes != [0, 1] or clf.coef_.shape != (1, len(feature_names)):
        raise ArtifactRejected("artifact is not a binary classifier over the manifest's features")
    coef = [float(c) for c in clf.coef_[0]]
    scale = [float(s) for s in scaler.scale_] if scaler.scale_ is not None else [1.0] * len(coef)
    mean = [float(m) for m in scaler.mean_] if scaler.mean_ is not None else [0.0] * len(coef)
    return LinearForm(
        baseline=float(clf.intercept_[0]),
        weights=tuple(c / s for c, s in zip(coef, scale, strict=True)),
        means=tuple(mean),
    )
