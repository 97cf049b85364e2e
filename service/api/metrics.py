"""GET /metrics on the main port. Under gunicorn (PROMETHEUS_MULTIPROC_DIR set) every scrape
aggregates all workers' files through a fresh MultiProcessCollector; otherwise the app's own registry
is exposed. With ECMO_METRICS_BIND set the route is not registered: the gunicorn master serves
/metrics on that port (service/ops.py) and the main port answers 404."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from service.api.deps import Deps
from service.metrics_files import scrape_lock


def create_metrics_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("metrics", __name__)
    multiproc_dir = deps.settings.multiproc_dir
    if deps.settings.metrics_bind is not None:
        return bp

    @bp.get("/metrics")
    def metrics() -> Response:
        if multiproc_dir is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
            with scrape_lock(multiproc_dir):  # not halfway through a dead worker's merge
                data = generate_latest(registry)
        else:
            data = generate_latest(deps.metrics.registry)
        return Response(data, content_type=CONTENT_TYPE_LATEST)

    return bp
