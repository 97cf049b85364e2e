"""Request bodies: the single-patient examples and a deterministic batch of patients."""

from __future__ import annotations

import json
import random
from typing import Any

SINGLE: dict[str, dict[str, Any]] = {
    "weaning": {
        "inputs": {
            "apache_ii": 22,
            "vis_0h": 40,
            "vis_24h": 12,
            "lactate_24h": {"value": 2.8, "unit": "mmol/L"},
        }
    },
    "ich": {
        "inputs": {
            "gwr": 1.25,
            "stroke_history": False,
            "ffp_volume": {"value": 400, "unit": "mL"},
            "min_platelets": {"value": 80, "unit": "10*9/L"},
        }
    },
}


def _weaning(rng: random.Random) -> dict[str, Any]:
    vis_0h = round(rng.uniform(5, 80), 1)
    return {
        "apache_ii": rng.randint(8, 40),
        "vis_0h": vis_0h,
        "vis_24h": round(rng.uniform(0, vis_0h * 1.2), 1),
        "lactate_24h": rng.choice(
            [
                {"value": round(rng.uniform(0.6, 8.0), 2), "unit": "mmol/L"},
                {"value": round(rng.uniform(6, 70), 1), "unit": "mg/dL"},
            ]
        ),
    }


def _ich(rng: random.Random) -> dict[str, Any]:
    return {
        "gwr": round(rng.uniform(1.05, 1.5), 3),
        "stroke_history": rng.random() < 0.15,
        "ffp_volume": {"value": rng.choice([0, 200, 400, 800, 1600, 3000]), "unit": "mL"},
        "min_platelets": {"value": rng.randint(15, 350), "unit": "10*9/L"},
    }


def batch(model: str, n: int, seed: int = 7) -> dict[str, Any]:
    """n patients with varied, valid inputs (mixed units), the same every run."""
    rng = random.Random(seed)
    make = _weaning if model == "weaning" else _ich
    return {"patients": [{"inputs": make(rng)} for _ in range(n)]}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
