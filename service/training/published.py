"""What the two source papers publish, kept apart from everything we simulate or fit.

Every number here is quoted in the model cards as "published"; everything else is "simulated".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedOR:
    feature: str
    per: str
    """The unit the published OR is per (inferred from the CI widths, see CLINICAL.md)."""
    per_value: float
    """Multiply the per-canonical-unit coefficient by this to get the published unit."""
    odds_ratio: float
    ci95: tuple[float, float]


WEANING_SOURCE = (
    "Retrospective single-centre cohort of VA-ECMO for cardiogenic shock "
    "(journal abstract, cbyxyxb.journalai.cn article 2601010); 150 patients, 84 weaned"
)
WEANING_PUBLISHED = {
    "n": 150,
    "events": 84,
    "prevalence": 84 / 150,
    "auc_combined": 0.820,
    "auc_vrr_alone": 0.780,
    "odds_ratios": "not published (directions only)",
}

ICH_SOURCE = (
    "Zhu et al., World J Emerg Med 2025;16(2):153-160, doi 10.5847/wjem.j.1920-8642.2025.037; "
    "227 adults on ECMO >= 24 h, 22 ICH"
)
ICH_ORS = (
    PublishedOR("gwr", "0.01 (GWR x 100)", 0.01, 0.894, (0.841, 0.951)),
    PublishedOR("stroke_history", "yes vs no", 1.0, 4.265, (1.052, 17.291)),
    PublishedOR("ffp_volume_ml", "100 mL", 100.0, 1.208, (1.037, 1.408)),
    PublishedOR("min_platelets", "1x10^9/L", 1.0, 0.977, (0.958, 0.996)),
)
ICH_PUBLISHED = {
    "n": 227,
    "events": 22,
    "prevalence": 22 / 227,
    "auc": 0.843,
    "auc_ci95": [0.762, 0.924],
    "odds_ratios": {
        o.feature: {"per": o.per, "odds_ratio": o.odds_ratio, "ci95": list(o.ci95)} for o in ICH_ORS
    },
}
