"""GET /metrics. Under gunicorn (PROMETHEUS_MULTIPROC_DIR set) every scrape aggregates all workers'
files through a fresh MultiProcessCollector; otherwise the app's own registry is exposed."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from service.api.deps import Deps


def create_metrics_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("metrics", __name__)
    multiproc_dir = deps.settings.multiproc_dir

    @bp.get("/metrics")
    def metrics() -> Response:
        if multiproc_dir is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
        else:
            registry = deps.metrics.registry
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return bp
