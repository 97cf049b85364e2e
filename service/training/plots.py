"""roc.png and calibration.png for the model card (matplotlib, Agg backend, held-out split)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from service.training.cohort import FloatArray, IntArray
from service.training.metrics import auc, calibration_bins

_METADATA = {"Software": None}  # keep the PNGs free of version strings


def write_roc(
    path: Path, y: IntArray, curves: Sequence[tuple[str, FloatArray]], title: str
) -> None:
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        for label, score in curves:
            fpr, tpr, _ = roc_curve(y, score)
            ax.plot(fpr, tpr, label=f"{label} (AUC {auc(y, score):.3f})")
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"{title}: ROC, held-out split (simulated)" if title else "ROC")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, format="png", metadata=_METADATA)
    finally:
        plt.close(fig)


def write_calibration(path: Path, y: IntArray, p: FloatArray, title: str) -> None:
    bins = calibration_bins(y, p)
    pred = np.array([b["mean_predicted"] for b in bins])
    obs = np.array([b["observed"] for b in bins])
    n = np.array([b["n"] for b in bins])
    err = 1.96 * np.sqrt(np.clip(obs * (1 - obs), 1e-12, None) / n)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        hi = float(max(pred.max(), obs.max())) * 1.05
        ax.plot([0, hi], [0, hi], linestyle=":", color="grey", label="ideal")
        ax.errorbar(pred, obs, yerr=err, fmt="o", capsize=3, label="deciles (95% CI)")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed proportion")
        ax.set_title(f"{title}: calibration, held-out split")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png", metadata=_METADATA)
    finally:
        plt.close(fig)
