"""CDS Hooks: prefetch -> prediction -> cards (CDS Hooks 2.0 "CDS Service Response").

assess() runs a service's FHIR mapping, then the same scoring (core.scoring) as the JSON API, so
a card's probability equals the JSON API's for the same patient. cards() turns the Prediction into
card dicts: summary < 140 characters with probability and risk band, indicator from the model's
manifest (risk_bands[].cds_indicator), Markdown detail with the contributing factors, their values,
units and observation times, source naming the model and linking its card, a uuid and
overrideReasons. Optional fields are omitted, never null (CDS Hooks "Use of JSON").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.core.fhir import ExtractedInput, Extraction, ServiceMapping, extract
from service.core.kinds.base import FeatureSpec, ModelKind
from service.core.predictor import Prediction
from service.core.registry import LoadedModel
from service.core.scoring import Scoring
from service.errors import InvalidClinicalData, InvalidInput

SUMMARY_MAX = 139
"""CDS Hooks: summary "<140 characters"."""

OVERRIDE_REASON_SYSTEM = "urn:ecmo-risk-service:cds-override-reason"
OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("data-incorrect", "Input data are outdated or incorrect"),
    ("outside-intended-use", "Patient is outside the model's intended population"),
    ("clinical-judgement", "Clinical assessment differs from the prediction"),
    ("already-addressed", "Already taken into account in the care plan"),
)
EXTENSION_KEY = "ecmo-risk-service"
"""Card.extension member (CDS Hooks 2.0 "Extensions") with the exact probability and band."""


REFERENCE_MODEL_NOTICE = (
    "Reference model fitted on simulated data: not for clinical decisions (see the model card)."
)
"""Said on every card of a model whose manifest's training.source is "simulate"."""


def is_reference_model(model: LoadedModel) -> bool:
    """A model fitted on a simulated cohort (manifest training.source "simulate")."""
    training = model.manifest.raw.get("training")
    return isinstance(training, dict) and training.get("source") == "simulate"


@dataclass(frozen=True)
class Assessment:
    mapping: ServiceMapping
    extraction: Extraction
    prediction: Prediction


def assess(
    mapping: ServiceMapping,
    model: LoadedModel,
    prefetch: dict[str, Any] | None,
    now: datetime,
    scoring: Scoring,
    patient: str | None = None,
) -> Assessment:
    """Prefetch -> inputs -> scoring.one. Value errors are reported at their FHIR paths.
    patient (context.patientId): resources about another patient are ignored."""
    extraction = extract(mapping, prefetch, now, scoring.units, patient)
    try:
        prediction = scoring.one(model, extraction.inputs)
    except InvalidInput as exc:
        raise InvalidClinicalData(
            f"{len(exc.errors)} prefetched value(s) are not acceptable",
            [extraction.locate(e) for e in exc.errors],
        ) from exc
    return Assessment(mapping, extraction, prediction)


def _outcome(kind: ModelKind) -> str:
    return kind.outcome_phrase or kind.outcome


def _pct(p: float) -> str:
    pct = p * 100
    if 0 < pct < 1:
        return "<1%"
    if 99 < pct < 100:
        return ">99%"
    return f"{pct:.0f}%"


def summary(outcome: str, title: str, p: float, band: str) -> str:
    text = f"{title}: {_pct(p)} predicted probability of {outcome} ({band} band)"
    if len(text) > SUMMARY_MAX:
        text = f"{_pct(p)} predicted probability of {outcome} ({band})"
    return text[:SUMMARY_MAX]


def _time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else "not recorded"


def _observed(item: ExtractedInput) -> str:
    if not item.sources:
        return item.note or "none recorded"
    if item.select == "running_at":
        return item.note or ""
    if item.select == "any":
        names = ", ".join(s.display for s in item.sources[:3])
        more = " …" if len(item.sources) > 3 else ""
        return f"Condition: {names}{more}" + (f" ({item.note})" if item.note else "")
    if len(item.sources) == 1:
        s = item.sources[0]
        shown = f"{s.display}, " if s.unit else ""
        return f"{shown}{_time(s.effective)} ({item.select})"
    times = sorted(s.effective for s in item.sources if s.effective is not None)
    span = f"{_time(times[0])} to {_time(times[-1])}" if times else "times not recorded"
    things = "administrations" if item.resource == "MedicationAdministration" else "observations"
    return f"{item.select} of {len(item.sources)} {things}, {span}"


def _value(value: float, feature: FeatureSpec) -> str:
    if feature.type == "boolean":
        return "yes" if value >= 0.5 else "no"
    if feature.type == "integer":
        return f"{value:.0f}"
    return f"{value:.3g}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def detail(a: Assessment) -> str:
    p = a.prediction
    kind = p.model.kind
    specs = {f.name: f for f in kind.features}
    lines = [f"**{REFERENCE_MODEL_NOTICE}**", ""] if is_reference_model(p.model) else []
    lines += [
        f"**{_pct(p.probability)}** predicted probability of {_outcome(kind)} "
        f"(probability {p.probability:.4f}; risk band **{p.band.name}**: {p.band.description}).",
        "",
        "Contributing factors, largest first (log-odds relative to the derivation cohort's "
        "average patient):",
        "",
        "| Factor | Value | Unit | Effect on probability (log-odds) | Data used (observation time) |",
        "|---|---|---|---|---|",
    ]
    for c in p.contributions:
        sources = [
            a.extraction.extracted[i]
            for i in kind.feature_inputs.get(c.feature, (c.feature,))
            if i in a.extraction.extracted
        ]
        observed = "; ".join(f"{s.label}: {_observed(s)}" for s in sources) or "—"
        unit = "" if c.unit == "yes/no" else c.unit
        lines.append(
            f"| {_md_cell(c.label)} | {_value(c.value, specs[c.feature])} | {_md_cell(unit)} | "
            f"{c.direction} ({c.log_odds:+.2f}) | {_md_cell(observed)} |"
        )
    if p.extrapolated:
        lines += [
            "",
            "**This estimate is outside the validated range**: at least one input lies beyond the "
            "range of the cohort the model was derived from, so it was scored at the edge of that "
            "range. Treat the estimate as an extrapolation, not as a measured risk.",
        ]
    checks = [w.message for w in p.warnings] + list(a.extraction.notices)
    if checks:
        lines += ["", "**Check before use:**", ""]
        lines += [f"- {text}" for text in checks]
    lines += [
        "",
        f"Model {p.model.name} {p.model.version}; inputs were read from the data the EHR "
        "prefetched or, for what it did not prefetch, from its FHIR server.",
    ]
    return "\n".join(lines)


def source_paths(a: Assessment) -> list[str]:
    """Prefetch paths (prefetch.<key>.entry[i].resource) of every resource an input came from."""
    return [s.path for item in a.extraction.extracted.values() for s in item.sources]


def source_label(model: LoadedModel) -> str:
    label = f"{model.name} model {model.version}"
    if is_reference_model(model):
        label += " (reference model, not for clinical decisions)"
    return label


def cards(
    a: Assessment,
    card_url: str,
    new_uuid: Callable[[], str] | None = None,
    risk_assessment: dict[str, Any] | None = None,
    explain_url: str | None = None,
) -> list[dict[str, Any]]:
    """One card per prediction; card_url is the model card (GET /v1/models/{name}/card).

    risk_assessment, when given, is offered as a suggestion with one `create` action (CDS Hooks
    2.0 "Suggestion"/"Action"), so the EHR can store the prediction; explain_url, when given, is
    the card's `absolute` link to the "why this risk" page.
    """
    p = a.prediction
    make_uuid = new_uuid or (lambda: str(uuid.uuid4()))
    ext: dict[str, Any] = {
        "model": p.model.name,
        "version": p.model.version,
        "probability": p.probability,
        "risk_band": p.band.name,
    }
    if p.warnings:  # optional members are omitted, never empty
        ext["warnings"] = sorted({w.code for w in p.warnings})
    ext["extrapolated"] = p.extrapolated
    indicator = p.band.cds_indicator
    if p.extrapolated and indicator == "critical":
        indicator = "warning"  # never critical on an extrapolation alone
    card: dict[str, Any] = {
        "uuid": make_uuid(),
        "summary": summary(_outcome(p.model.kind), a.mapping.title, p.probability, p.band.name),
        "indicator": indicator,
        "detail": detail(a),
        "source": {"label": source_label(p.model), "url": card_url},
        "overrideReasons": [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS
        ],
        "extension": {EXTENSION_KEY: ext},
    }
    if risk_assessment is not None:
        card["suggestions"] = [
            {
                "label": "Record this risk assessment in the chart",
                "uuid": make_uuid(),
                "actions": [
                    {
                        "type": "create",
                        "description": f"Create a RiskAssessment ({p.model.name} model "
                        f"{p.model.version}, probability {p.probability:.3f}, {p.band.name} band)",
                        "resource": risk_assessment,
                    }
                ],
            }
        ]
    if explain_url is not None:
        card["links"] = [
            {
                "label": "Why this risk: factors, inputs and model facts",
                "url": explain_url,
                "type": "absolute",
            }
        ]
    return [card]
