"""Held-out evaluation: discrimination, calibration and subgroups, with bootstrap CIs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from service.training.cohort import FloatArray, IntArray

_P_CLIP = 1e-12


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


def _newton(z: FloatArray, y: FloatArray, offset: FloatArray) -> FloatArray:
    """Maximum-likelihood logistic regression of y on z with a fixed offset (no penalty)."""
    beta = np.zeros(z.shape[1])
    for _ in range(100):
        eta = offset + z @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        grad = z.T @ (y - mu)
        hess = z.T @ (z * (mu * (1.0 - mu))[:, None])
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    return beta


def calibration(y: IntArray, p: FloatArray) -> dict[str, float]:
    """Calibration-in-the-large (intercept with logit(p) as offset) and the calibration slope."""
    lp = _logit(p)
    yf = y.astype(np.float64)
    ones = np.ones((len(y), 1))
    intercept = _newton(ones, yf, lp)[0]
    _, slope = _newton(np.column_stack([ones, lp]), yf, np.zeros(len(y)))
    return {"intercept": float(intercept), "slope": float(slope)}


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


def calibration_bins(y: IntArray, p: FloatArray, n_bins: int = 10) -> list[dict[str, float]]:
    """Observed vs predicted by deciles of predicted risk (for the card and the plot)."""
    order = np.argsort(p, kind="stable")
    bins = [b for b in np.array_split(order, n_bins) if len(b)]
    return [
        {
            "n": float(len(b)),
            "mean_predicted": float(p[b].mean()),
            "observed": float(y[b].mean()),
        }
        for b in bins
    ]
