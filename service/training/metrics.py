"""Evaluation of predicted probabilities: discrimination, calibration, risk-band cut-offs, decision
curves and subgroups, with confidence intervals. Used by training (held-out split or bootstrap
optimism correction) and by site validation alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import SplineTransformer

from service.training.cohort import FloatArray, IntArray

_P_CLIP = 1e-12
Z95 = 1.959963984540054


def auc(y: IntArray, score: FloatArray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count one half)."""
    y = np.asarray(y)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs both outcome classes")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average_rank = upper - (counts - 1) / 2.0  # 1-based mid-ranks of each distinct value
    ranks = average_rank[inverse]
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def bootstrap_auc_ci(
    y: IntArray, score: FloatArray, rng: np.random.Generator, n_boot: int
) -> tuple[float, float]:
    """Percentile 95% CI; resamples that draw a single class are skipped."""
    values: list[float] = []
    n = len(y)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        values.append(auc(yb, score[idx]))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def brier(y: IntArray, p: FloatArray) -> float:
    return float(np.mean((p - y) ** 2))


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _P_CLIP, 1.0 - _P_CLIP)
    return np.asarray(np.log(q / (1.0 - q)), dtype=np.float64)


def logit(p: FloatArray) -> FloatArray:
    return _logit(p)


def fit_logistic(z: FloatArray, y: FloatArray, offset: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Maximum-likelihood logistic regression of y on z with a fixed offset (no penalty).

    Returns the estimates and their Wald covariance (the inverse Fisher information)."""
    beta = np.zeros(z.shape[1])
    hess = np.eye(z.shape[1])
    for _ in range(100):
        eta = offset + z @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        grad = z.T @ (y - mu)
        hess = z.T @ (z * (mu * (1.0 - mu))[:, None])
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    eta = offset + z @ beta
    mu = 1.0 / (1.0 + np.exp(-eta))
    hess = z.T @ (z * (mu * (1.0 - mu))[:, None])
    return beta, np.asarray(np.linalg.inv(hess), dtype=np.float64)


def _wald(estimate: float, variance: float) -> list[float]:
    se = float(np.sqrt(variance))
    return [estimate - Z95 * se, estimate + Z95 * se]


def calibration(y: IntArray, p: FloatArray) -> dict[str, Any]:
    """Calibration-in-the-large (intercept with logit(p) as offset) and the calibration slope
    (logistic regression of y on logit(p)), each with its Wald 95% CI."""
    lp = _logit(p)
    yf = y.astype(np.float64)
    ones = np.ones((len(y), 1))
    (intercept,), cov1 = fit_logistic(ones, yf, lp)
    (a, slope), cov2 = fit_logistic(np.column_stack([ones, lp]), yf, np.zeros(len(y)))
    return {
        "intercept": float(intercept),
        "intercept_ci95": _wald(float(intercept), cov1[0, 0]),
        "slope": float(slope),
        "slope_ci95": _wald(float(slope), cov2[1, 1]),
        "slope_model_intercept": float(a),
    }


def recalibration(y: IntArray, p: FloatArray, method: str) -> tuple[float, float]:
    """Logistic recalibration (a, b): new log-odds = a + b * old log-odds.

    "intercept": b = 1 and a = calibration-in-the-large; "slope": a and b both re-estimated."""
    cal = calibration(y, p)
    if method == "intercept":
        return float(cal["intercept"]), 1.0
    if method == "slope":
        return float(cal["slope_model_intercept"]), float(cal["slope"])
    raise ValueError(f"unknown recalibration method {method!r}")


def bootstrap_ci(
    y: IntArray,
    p: FloatArray,
    statistic: Any,
    rng: np.random.Generator,
    n_boot: int,
) -> list[float]:
    """Percentile 95% CI of statistic(y, p) over bootstrap resamples (single-class ones skipped)."""
    values: list[float] = []
    n = len(y)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        values.append(float(statistic(yb, p[idx])))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def wilson(events: int, n: int) -> list[float]:
    """Wilson score 95% interval for a proportion: honest (non-zero width) at 0 and n events."""
    if n == 0:
        return [0.0, 1.0]
    phat = events / n
    denom = 1.0 + Z95**2 / n
    centre = (phat + Z95**2 / (2 * n)) / denom
    half = Z95 * np.sqrt(phat * (1 - phat) / n + Z95**2 / (4 * n * n)) / denom
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def cutoff_table(y: IntArray, p: FloatArray, cutoffs: Sequence[float]) -> list[dict[str, Any]]:
    """For each cut-off c: "positive" means p >= c; sensitivity, specificity, PPV, NPV (None when
    a denominator is empty)."""
    rows = []
    for c in cutoffs:
        pos = p >= c
        tp = int(np.sum(pos & (y == 1)))
        fp = int(np.sum(pos & (y == 0)))
        fn = int(np.sum(~pos & (y == 1)))
        tn = int(np.sum(~pos & (y == 0)))
        rows.append(
            {
                "cutoff": float(c),
                "n_at_or_above": tp + fp,
                "sensitivity": _ratio(tp, tp + fn),
                "specificity": _ratio(tn, tn + fp),
                "ppv": _ratio(tp, tp + fp),
                "npv": _ratio(tn, tn + fn),
            }
        )
    return rows


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def band_table(
    y: IntArray, p: FloatArray, bands: Sequence[tuple[str, float, float]]
) -> list[dict[str, Any]]:
    """Per risk band [lower, upper) (the last one closed): n, events, observed with its Wilson CI,
    mean predicted."""
    rows = []
    for i, (name, lower, upper) in enumerate(bands):
        last = i == len(bands) - 1
        mask = (p >= lower) & ((p <= upper) if last else (p < upper))
        n, events = int(mask.sum()), int(y[mask].sum())
        rows.append(
            {
                "band": name,
                "lower": float(lower),
                "upper": float(upper),
                "n": n,
                "events": events,
                "observed": events / n if n else None,
                "observed_ci95": wilson(events, n),
                "mean_predicted": float(p[mask].mean()) if n else None,
            }
        )
    return rows


def net_benefit(y: IntArray, p: FloatArray, thresholds: FloatArray) -> dict[str, list[float]]:
    """Decision curve (Vickers & Elkin 2006): net benefit of treating when p >= t, of treating all
    and of treating none, at each threshold probability t."""
    n = len(y)
    prevalence = float(np.mean(y))
    model, treat_all = [], []
    for t in thresholds:
        odds = t / (1.0 - t)
        pos = p >= t
        tp = float(np.sum(pos & (y == 1)))
        fp = float(np.sum(pos & (y == 0)))
        model.append(tp / n - fp / n * odds)
        treat_all.append(prevalence - (1.0 - prevalence) * odds)
    return {
        "threshold": [float(t) for t in thresholds],
        "model": model,
        "treat_all": treat_all,
        "treat_none": [0.0] * len(thresholds),
    }


def discrimination(
    y: IntArray, score: FloatArray, rng: np.random.Generator, n_boot: int
) -> dict[str, Any]:
    lo, hi = bootstrap_auc_ci(y, score, rng, n_boot)
    return {"auc": auc(y, score), "auc_ci95": [lo, hi]}


def subgroup_aucs(
    y: IntArray,
    p: FloatArray,
    subgroups: Mapping[str, npt.NDArray[Any]],
    wanted: Mapping[str, tuple[tuple[str, Any], ...]],
    rng: np.random.Generator,
    n_boot: int,
) -> dict[str, Any]:
    """AUC per level of each subgroup variable; a variable the cohort lacks is "not available"."""
    out: dict[str, Any] = {}
    for var, levels in wanted.items():
        if var not in subgroups:
            out[var] = "not available (the cohort has no such column)"
            continue
        values = subgroups[var]
        table: dict[str, Any] = {}
        for label, level in levels:
            mask = values == level
            ys, ps = y[mask], p[mask]
            entry: dict[str, Any] = {"n": int(mask.sum()), "events": int(ys.sum())}
            if entry["n"] and 0 < entry["events"] < entry["n"]:
                entry.update(discrimination(ys, ps, rng, n_boot))
            else:
                entry["auc"] = None
                entry["note"] = "not estimable: the subgroup lacks events or non-events"
            table[label] = entry
        out[var] = table
    return out


def calibration_bins(y: IntArray, p: FloatArray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Observed vs predicted by deciles of predicted risk (for the card and the plot); the
    observed proportion carries its Wilson 95% interval, which stays honest when a decile has no
    events (a Wald interval would have zero width there)."""
    order = np.argsort(p, kind="stable")
    bins = [b for b in np.array_split(order, n_bins) if len(b)]
    return [
        {
            "n": float(len(b)),
            "events": int(y[b].sum()),
            "mean_predicted": float(p[b].mean()),
            "observed": float(y[b].mean()),
            "observed_ci95": wilson(int(y[b].sum()), len(b)),
        }
        for b in bins
    ]


SMOOTHING = (
    "ridge-penalised (C=10) logistic regression of the outcome on a cubic B-spline of logit(p) "
    "with 3 knots at quantiles (a flexible calibration curve, Van Calster et al. 2016); the "
    "penalty keeps a stretch of predicted risk without events from bending the curve to 0"
)


def smoothed_calibration(y: IntArray, p: FloatArray, points: int = 50) -> dict[str, Any]:
    """The smoothed calibration curve: observed probability as a smooth function of predicted,
    drawn between the 1st and 99th percentile of p (where the data are)."""
    lp = _logit(p)
    spline = SplineTransformer(
        n_knots=3, degree=3, knots="quantile", include_bias=False, extrapolation="linear"
    )
    smoother = LogisticRegression(C=10.0, tol=1e-10, max_iter=10_000)
    smoother.fit(spline.fit_transform(lp[:, None]), y)
    lo, hi = np.percentile(lp, [1, 99])
    grid = np.linspace(lo, hi, points)
    observed = smoother.predict_proba(spline.transform(grid[:, None]))[:, 1]
    predicted = 1.0 / (1.0 + np.exp(-grid))
    return {
        "method": SMOOTHING,
        "predicted": [float(v) for v in predicted],
        "observed": [float(v) for v in observed],
    }
