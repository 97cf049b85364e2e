"""Geometry of the "why this risk" waterfall: from the average patient's log-odds, one step per
contribution, to this patient's log-odds, on a log-odds axis labelled in probabilities.

Pure arithmetic (the page's template draws the SVG from it); exact because the model is additive
in log-odds: baseline + sum(contributions) = this patient's log-odds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PROBABILITY_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def expit(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


@dataclass(frozen=True)
class Bar:
    label: str
    start: float
    """log-odds where the bar starts"""
    end: float
    kind: str
    """total (average patient / this patient), raises, lowers"""
    x: float
    """left edge in px"""
    width: float
    y: float
    text: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Waterfall:
    width: int
    height: int
    plot_left: int
    plot_right: int
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    row_height: int
    axis_y: float


def waterfall(
    baseline: float,
    contributions: Sequence[tuple[str, float]],
    width: int = 760,
    label_width: int = 250,
    row_height: int = 34,
) -> Waterfall:
    """contributions: (label, log-odds) in display order."""
    levels = [baseline]
    for _, term in contributions:
        levels.append(levels[-1] + term)
    lo, hi = min(levels), max(levels)
    span = max(hi - lo, 1.0)
    lo, hi = lo - 0.15 * span, hi + 0.15 * span
    left, right = label_width, width - 130  # room right of the bars for their value labels

    def px(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    rows: list[tuple[str, float, float, str, str]] = [
        ("Average patient", lo, baseline, "total", f"{expit(baseline):.1%}")
    ]
    level = baseline
    for label, term in contributions:
        kind = "raises" if term > 0 else "lowers" if term < 0 else "neutral"
        rows.append((label, level, level + term, kind, f"{term:+.2f} log-odds"))
        level += term
    rows.append(("This patient", lo, level, "total", f"{expit(level):.1%}"))
    bars = []
    for i, (label, a, b, kind, text) in enumerate(rows):
        x0, x1 = sorted((px(a), px(b)))
        bars.append(Bar(label, a, b, kind, x0, max(x1 - x0, 1.5), 10 + i * row_height, text))
    ticks = tuple(Tick(px(logit(p)), f"{p:.0%}") for p in PROBABILITY_TICKS if lo <= logit(p) <= hi)
    axis_y = 10 + len(rows) * row_height + 4
    return Waterfall(width, int(axis_y + 30), left, right, tuple(bars), ticks, row_height, axis_y)
