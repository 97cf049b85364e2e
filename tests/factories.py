"""Tiny but real models for tests: the training command's own Pipeline (service.training.fit)
fitted on a few hundred random rows, written with a manifest as the registry expects (sha256,
versions, features, bands, self-tests computed by sklearn's own predict_proba)."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from service.core.drift import reference_distribution
from service.core.specs import MODEL_KINDS
from service.training.fit import fit, predict_proba

# Feature distributions roughly like the clinical cohorts, so realistic payloads are in range.
_COLUMNS: dict[str, list[tuple[float, float, float, float]]] = {
    # (mean, sd, low, high) per feature
    "weaning": [(0.4, 0.4, -1, 1), (20, 6, 0, 71), (15, 10, 0, 300), (3, 2, 0.3, 30)],
    "ich": [(1.28, 0.1, 0.95, 1.6), (0.1, 0.3, 0, 1), (350, 300, 0, 15000), (75, 40, 3, 600)],
}
_TRUE_WEIGHTS = {"weaning": [1.2, -0.05, -0.01, -0.1], "ich": [-11.0, 1.4, 0.002, -0.02]}

BANDS = {
    "weaning": [
        ("low", 0.0, 0.3, "warning"),
        ("intermediate", 0.3, 0.6, "info"),
        ("high", 0.6, 1.0, "info"),
    ],
    "ich": [
        ("low", 0.0, 0.05, "info"),
        ("intermediate", 0.05, 0.15, "warning"),
        ("high", 0.15, 1.0, "critical"),
    ],
}


def fit_tiny(
    kind: str,
    seed: int = 0,
    n: int = 400,
    columns: list[tuple[float, float, float, float]] | None = None,
    weights: list[float] | None = None,
) -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = columns or _COLUMNS[kind]
    cols = [np.clip(rng.normal(m, s, n), lo, hi) for m, s, lo, hi in columns]
    if kind == "ich":
        cols[1] = (rng.random(n) < 0.2).astype(float)
    x = np.column_stack(cols)
    z = (x - x.mean(axis=0)) @ np.array(weights or _TRUE_WEIGHTS[kind])
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return fit(x, y, MODEL_KINDS[kind].feature_names), x


def write_model(
    root: Path,
    kind: str,
    version: str = "1.0.0",
    name: str | None = None,
    seed: int = 0,
    columns: list[tuple[float, float, float, float]] | None = None,
    weights: list[float] | None = None,
    bands: list[tuple[str, float, float, str]] | None = None,
) -> Path:
    """Fit a tiny model and write it to root/<name>/<version>/ with its manifest and a card.
    columns, weights and bands (default: this module's tables) let a test kind bring its own."""
    name = name or kind
    spec = MODEL_KINDS[kind]
    pipeline, x = fit_tiny(kind, seed, columns=columns, weights=weights)
    out = root / name / version
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / "model.joblib"
    joblib.dump(pipeline, artifact)
    probe = x[:5]
    expected = predict_proba(pipeline, probe)
    manifest: dict[str, Any] = {
        "manifest_version": 1,
        "name": name,
        "kind": kind,
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "artifact": {
            "file": "model.joblib",
            "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        },
        "runtime": {
            "python": platform.python_version(),
            "scikit_learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
        "outcome": spec.outcome,
        "features": [
            {
                "name": f.name,
                "label": f.label,
                "unit": f.unit,
                "type": f.type,
                "hard_bounds": [f.hard.low, f.hard.high],
                "soft_bounds": [f.soft.low, f.soft.high],
                "derivation_range": [float(x[:, i].min()), float(x[:, i].max())],
            }
            for i, f in enumerate(spec.features)
        ],
        "risk_bands": [
            {"name": b, "lower": lo, "upper": hi, "cds_indicator": ind, "description": f"{b} band"}
            for b, lo, hi, ind in bands or BANDS[kind]
        ],
        "metrics": {},
        "self_tests": [
            {
                "features": dict(zip(spec.feature_names, map(float, row), strict=True)),
                "expected_probability": float(p),
            }
            for row, p in zip(probe, expected, strict=True)
        ],
        "provenance": {"note": "tiny test model"},
        "intended_use": "tests only",
        "limits": "random data",
        "card": "MODEL_CARD.md",
        "reference_distribution": reference_distribution(
            spec.features, x, predict_proba(pipeline, x)
        ),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (out / "MODEL_CARD.md").write_text(f"# {name} {version}\n\nTiny test model.\n")
    return out


WEANING_INPUTS: dict[str, Any] = {
    "apache_ii": 22,
    "vis_0h": 40,
    "vis_24h": 12,
    "lactate_24h": {"value": 2.8, "unit": "mmol/L"},
}
ICH_INPUTS: dict[str, Any] = {
    "gwr": 1.25,
    "stroke_history": False,
    "ffp_volume": {"value": 400, "unit": "mL"},
    "min_platelets": {"value": 80, "unit": "10*9/L"},
}
