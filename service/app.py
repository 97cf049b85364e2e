"""create_app(): the one composition root. Nothing runs at import.

gunicorn calls it as 'service.app:create_app()'; tests call it with their own Settings and models.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry

from service import __version__
from service.api import register_blueprints
from service.api.cds.auth import CdsTokenVerifier
from service.api.deps import Deps
from service.api.errors import register_error_handlers
from service.api.security import add_security_headers, require_api_keys
from service.config import Settings, load_settings
from service.core.fhir import ServiceMapping, load_mappings
from service.core.registry import Registry
from service.core.scoring import Scoring
from service.core.units import UnitTable
from service.explain_token import ExplainTokens
from service.fhir_fetch import fetcher_from_settings
from service.logs import configure_logging, log_fields
from service.metrics_files import install_reserving_files
from service.telemetry import UNMATCHED_ROUTE, create_metrics

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMETERED = ("/metrics", "/health/live", "/health/ready")

log = logging.getLogger("ecmo.app")
access_log = logging.getLogger("ecmo.access")


class ServiceFlask(Flask):
    """Flask, deciding once per function whether it needs wrapping for async.

    Flask's ensure_sync asks inspect whether a view or hook is a coroutine function on every call
    (three times a prediction: two hooks and the view). The Flask docs name this method as the one
    to override to change how functions are run; the answer for a given function never changes.
    """

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is not FunctionType:
            return super().ensure_sync(func)  # bound methods are new objects at each access
        sync = self._sync.get(func)
        if sync is None:
            sync = self._sync[func] = super().ensure_sync(func)
        return sync


def _cds_services(
    mappings: Mapping[str, ServiceMapping], registry: Registry
) -> dict[str, ServiceMapping]:
    """The CDS services whose model is in the registry (ready or not: an unready one answers 503)."""
    known_models = {s.name for s in registry.statuses}
    services: dict[str, ServiceMapping] = {}
    for sid, m in mappings.items():
        if m.model in known_models:
            services[sid] = m
        else:
            log.warning(
                "CDS service not offered: no model", extra={"service": sid, "model": m.model}
            )
    return services


def _cds_verifier(settings: Settings) -> CdsTokenVerifier | None:
    verifier = CdsTokenVerifier.from_settings(settings)
    if verifier is None:
        log.warning(
            "CDS Hooks JWT verification is OFF: any caller can use /cds-services. "
            "Set ECMO_CDS_JWT_REQUIRED=true with ECMO_CDS_JWKS_FILE or ECMO_CDS_JWKS_URLS and "
            "ECMO_CDS_ALLOWED_ISSUERS in production."
        )
    return verifier


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    registry = registry or Registry.load(settings.model_dir, settings.default_versions)
    if settings.multiproc_dir is not None:
        install_reserving_files()  # a full metrics directory: ENOSPC, not SIGBUS (issue 19.3)
    metrics = create_metrics(CollectorRegistry(auto_describe=True))
    fetcher = fetcher_from_settings(settings, metrics.observe_fhir_fetch)
    tokens = (
        ExplainTokens(settings.explain_keys, settings.explain_ttl_seconds)
        if settings.explain_keys
        else None
    )
    deps = Deps(
        settings=settings,
        registry=registry,
        metrics=metrics,
        scoring=Scoring(UnitTable(settings.ffp_ml_per_unit)),
        cds_services=_cds_services(load_mappings(settings.fhir_mapping_dir), registry),
        cds_verifier=_cds_verifier(settings),
        fhir_fetcher=fetcher,
        explain_tokens=tokens,
    )

    app = ServiceFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    statuses = registry.statuses

    # Each use of the `request` and `g` proxies is a context lookup (~0.5 us; ~20 of them made
    # up a twentieth of a prediction's CPU): each hook resolves them once.
    @app.before_request
    def _start() -> None:
        req, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        ctx.started = time.perf_counter()
        # The WSGI environ key of the X-Request-ID header (what req.headers.get looks up, without
        # building the header view).
        incoming = req.environ.get("HTTP_X_REQUEST_ID", "")
        # 128 random bits as 32 hex digits, as uuid4().hex but without building a UUID object.
        ctx.request_id = incoming if REQUEST_ID.match(incoming) else os.urandom(16).hex()
        metrics.mark_models(statuses)

    @app.after_request
    def _finish(response: Response) -> Response:
        req, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - ctx.get("started", time.perf_counter())
        route = req.url_rule.rule if req.url_rule is not None else UNMATCHED_ROUTE
        request_id = ctx.get("request_id", "")
        method, status = req.method, response.status_code
        # add, not set: nothing else sets these two, so there is no earlier value to look for.
        response.headers.add("X-Request-ID", request_id)
        response.headers.add("Server-Timing", f"app;dur={elapsed * 1000:.3f}")
        add_security_headers(response)
        if route not in UNMETERED:
            metrics.observe_request(route, method, status, elapsed)
        log_fields(
            access_log,
            "request",
            {
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
                "model": ctx.get("model"),
            },
        )
        return response

    if settings.api_keys_file is not None:
        require_api_keys(app, settings.api_keys_file)
    register_blueprints(app, deps)
    # Whoever embeds the app (tests) can close what it holds open: the FHIR fetcher's pooled
    # HTTP connections (deps.fhir_fetcher.close()).
    app.extensions["ecmo"] = deps
    register_error_handlers(app)

    for status in registry.statuses:
        if status.ready:
            log.info(
                "model ready",
                extra={
                    "model": status.name,
                    "version": status.version,
                    "default_reason": status.default_reason,
                },
            )
        else:
            # The detail may name paths: the log is where they belong, never a response.
            log.error(
                "model not served",
                extra={
                    "model": status.name,
                    "version": status.version,
                    "reason": status.reason,
                    "detail": status.detail,
                    "model_dir": str(settings.model_dir),
                },
            )
    if not registry.statuses:
        log.error(
            "no models found: set ECMO_MODEL_DIR to a directory of <name>/<version>/",
            extra={"model_dir": str(settings.model_dir)},
        )
    log.info(
        "service started",
        extra={
            "version": __version__,
            "ready": registry.ready,
            "multiprocess_metrics": settings.multiproc_dir is not None,
        },
    )
    return app
