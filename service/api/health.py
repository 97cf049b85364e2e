"""GET /health/live (the process answers) and GET /health/ready (every model's default version
verified; else 503). Both list each version with its state and reason, never a filesystem path."""

from __future__ import annotations

from flask import Blueprint, Response

from service.api.deps import Deps
from service.api.errors import problem
from service.api.responses import json_response


def create_health_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("health", __name__)
    registry = deps.registry

    @bp.get("/health/live")
    def live() -> Response:
        return json_response({"status": "live"})

    @bp.get("/health/ready")
    def ready() -> Response:
        models = [
            {
                k: v
                for k, v in (
                    ("name", s.name),
                    ("version", s.version),
                    ("ready", s.ready),
                    ("default", s.default),
                    ("default_reason", s.default_reason),
                    ("reason", s.reason),
                )
                if v is not None
            }
            for s in registry.statuses
        ]
        if registry.ready:
            return json_response({"status": "ready", "models": models})
        reasons = registry.not_ready_reasons()
        return problem(503, "not_ready", "Service not ready", "; ".join(reasons), models=models)

    return bp
