"""roc.png and calibration.png for the model card (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from service.training.cohort import FloatArray, IntArray
from service.training.metrics import auc, calibration_bins

_METADATA = {"Software": None}  # keep the PNGs free of version strings
matplotlib.rcParams["svg.hashsalt"] = "ecmo-validate"  # stable element ids in the SVGs


def write_roc(
    path: Path, y: IntArray, curves: Sequence[tuple[str, FloatArray]], title: str, data: str
) -> None:
    """data says what the curve was computed on, e.g. "held-out split, simulated cohort"."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        for label, score in curves:
            fpr, tpr, _ = roc_curve(y, score)
            ax.plot(fpr, tpr, label=f"{label} (AUC {auc(y, score):.3f})")
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"{title}: ROC ({data})", fontsize=10)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, format="png", metadata=_METADATA)
    finally:
        plt.close(fig)


def calibration_errors(bins: Sequence[dict[str, Any]]) -> tuple[FloatArray, FloatArray]:
    """Error bar lengths below and above each decile's observed proportion: its Wilson interval
    (a decile without events still gets an honest upper bar, never a zero-width one)."""
    obs = np.array([b["observed"] for b in bins])
    lo = np.array([b["observed_ci95"][0] for b in bins])
    hi = np.array([b["observed_ci95"][1] for b in bins])
    return np.clip(obs - lo, 0, None), np.clip(hi - obs, 0, None)


def write_calibration(path: Path, y: IntArray, p: FloatArray, title: str, data: str) -> None:
    bins = calibration_bins(y, p)
    pred = np.array([b["mean_predicted"] for b in bins])
    obs = np.array([b["observed"] for b in bins])
    below, above = calibration_errors(bins)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        hi = float(max(pred.max(), (obs + above).max())) * 1.05
        ax.plot([0, hi], [0, hi], linestyle=":", color="grey", label="ideal")
        ax.errorbar(
            pred, obs, yerr=[below, above], fmt="o", capsize=3, label="deciles (Wilson 95% CI)"
        )
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed proportion")
        ax.set_title(f"{title}: calibration ({data})", fontsize=10)
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png", metadata=_METADATA)
    finally:
        plt.close(fig)


# -- the validation report's figures, drawn from its numbers alone, as inline SVG ---------------


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: it is inlined in HTML


def calibration_svg(doc: dict[str, Any], title: str) -> str:
    """Smoothed calibration curve, deciles with Wilson intervals, and the ideal diagonal."""
    curve = doc["calibration_curve"]
    bins = doc["calibration_by_decile"]
    pred = np.array([b["mean_predicted"] for b in bins])
    obs = np.array([b["observed"] for b in bins])
    below, above = calibration_errors(bins)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    try:
        hi = float(max(pred.max(), (obs + above).max(), max(curve["observed"]))) * 1.05
        hi = min(hi, 1.0)
        ax.plot([0, hi], [0, hi], linestyle=":", color="grey", label="ideal")
        ax.plot(curve["predicted"], curve["observed"], color="C0", label="smoothed (spline)")
        ax.errorbar(
            pred, obs, yerr=[below, above], fmt="o", color="C1", capsize=3,
            label="deciles (Wilson 95% CI)",
        )  # fmt: skip
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed proportion")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        return _svg(fig)
    finally:
        plt.close(fig)


def decision_curve_svg(doc: dict[str, Any], title: str) -> str:
    """Net benefit of the model against treating everyone and no one (Vickers & Elkin 2006)."""
    dc = doc["decision_curve"]
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    try:
        t = dc["threshold"]
        ax.plot(t, dc["model"], color="C0", label="model")
        ax.plot(t, dc["treat_all"], color="C2", linestyle="--", label="treat all")
        ax.plot(t, dc["treat_none"], color="grey", linestyle=":", label="treat none")
        top = max(max(dc["model"]), max(dc["treat_all"]), 0.01)
        ax.set_ylim(-0.05 * top - 0.01, top * 1.1)
        ax.set_xlabel("threshold probability")
        ax.set_ylabel("net benefit")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        return _svg(fig)
    finally:
        plt.close(fig)
