"""What the "why this risk" page shows about one CDS prediction, as a compact JSON-able dict.

It travels inside the page's encrypted token (service/explain_token.py), so it holds only what
the page needs: the numbers, the inputs with their units and the FHIR resources they came from
(display, time, reference) and the warnings; no patient identifier. The model card's facts are
read from the registry when the page is rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.core.cds import Assessment
from service.core.riskassessment import basis_references


def _time(t: datetime | None) -> str | None:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else None


def explanation_payload(
    a: Assessment, prefetch: Mapping[str, Any], created: datetime
) -> dict[str, Any]:
    p = a.prediction
    inputs = []
    for item in a.extraction.extracted.values():
        sources = []
        for s in item.sources:
            ref = basis_references(prefetch, [s.path])
            sources.append([s.display, _time(s.effective), ref[0] if ref else None])
        inputs.append([item.label, item.select, item.note, sources])
    return {
        "t": a.mapping.title,
        "k": a.mapping.kind,
        "o": p.model.kind.outcome_phrase or p.model.kind.outcome,
        "m": p.model.name,
        "mv": p.model.version,
        "p": p.probability,
        "lo": p.log_odds,
        "b": p.baseline_log_odds,
        "band": [p.band.name, p.band.description, p.band.cds_indicator],
        "c": [[c.feature, c.label, c.value, c.unit, c.log_odds] for c in p.contributions],
        "i": inputs,
        "w": [w.message for w in p.warnings],
        "at": _time(created),
    }
