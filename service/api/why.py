"""GET /why/<token>: the "why this risk" page a clinician opens from a CDS card.

    GET /why/<token>             HTML: probability, band, waterfall (inline SVG drawn here),
                                 inputs with units and FHIR sources, warnings, model facts
    GET /why/assets/why.css      the page's only asset (shipped in the package)

The token (service/explain_token.py) carries the prediction, encrypted and authenticated, with
its creation time: the service keeps no state, any worker of any pod with the same keys can
render it, and the URL holds no readable patient data. An unknown or altered token is 404, an
expired one 410 (problem+json, as every error). No inline script or style: a strict CSP holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from flask import Blueprint, Response, render_template, request

from service.api.deps import Deps
from service.core.waterfall import waterfall
from service.errors import ExplanationNotFound, ModelNotReady, UnknownModel

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _pct(p: float) -> str:
    pct = p * 100
    if 0 < pct < 1:
        return "<1%"
    if 99 < pct < 100:
        return ">99%"
    return f"{pct:.0f}%"


def _value(value: float, unit: str, feature: str) -> str:
    if unit == "yes/no":
        return "yes" if value >= 0.5 else "no"
    if feature == "apache_ii":
        return f"{value:.0f}"
    return f"{value:.3g}"


def model_facts(raw: dict[str, Any]) -> dict[str, Any]:
    """The model card's key facts from its manifest (missing ones are left out)."""
    found = raw.get("metrics")
    metrics: dict[str, Any] = found if isinstance(found, dict) else {}
    facts: dict[str, Any] = {
        "label": raw.get("label"),
        "intended_use": raw.get("intended_use"),
        "limits": raw.get("limits"),
        "created": raw.get("created"),
    }
    auc, ci = metrics.get("auc"), metrics.get("auc_ci95")
    if isinstance(auc, int | float):
        facts["auc"] = f"{auc:.3f}" + (
            f" (95% CI {ci[0]:.3f} to {ci[1]:.3f})" if isinstance(ci, list) and len(ci) == 2 else ""
        )
        facts["evaluated_on"] = metrics.get("evaluated_on")
    slope, brier = metrics.get("calibration_slope"), metrics.get("brier")
    if isinstance(slope, int | float) and isinstance(brier, int | float):
        facts["calibration"] = f"slope {slope:.2f}, Brier score {brier:.3f}"
    n, events = metrics.get("n"), metrics.get("events")
    if isinstance(n, int) and isinstance(events, int):
        facts["cohort"] = f"evaluated on {n} patients, {events} with the outcome"
    return facts


def create_why_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("why", __name__, template_folder="../templates")
    registry, tokens = deps.registry, deps.explain_tokens
    css = resources.files("service").joinpath("static/why.css").read_bytes()

    @bp.get("/why/assets/why.css")
    def stylesheet() -> Response:
        return Response(
            css,
            content_type="text/css; charset=utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    @bp.get("/why/<token>")
    def page(token: str) -> Response:
        if tokens is None:
            raise ExplanationNotFound("explanation links are not enabled (ECMO_EXPLAIN_KEYS)")
        e = tokens.open(token)
        try:
            model = registry.get(e["m"], e["mv"])
            facts: dict[str, Any] | None = model_facts(model.manifest.raw)
        except (UnknownModel, ModelNotReady):
            facts = None
        wf = waterfall(e["b"], [(c[1], c[4]) for c in e["c"]])
        created = datetime.strptime(e["at"], "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
        expires = (created + timedelta(seconds=tokens.ttl)).strftime("%Y-%m-%d %H:%M UTC")
        html = render_template(
            "why.html",
            e=e,
            wf=wf,
            facts=facts,
            pct=_pct,
            value=_value,
            expires=expires,
            css_url=f"{request.script_root}/why/assets/why.css",
            card_url=f"{request.script_root}/v1/models/{e['m']}/card?version={e['mv']}",
        )
        return Response(html, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    return bp
