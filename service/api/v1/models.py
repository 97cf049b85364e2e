"""GET /v1/models, /v1/models/<name> (the manifest) and /v1/models/<name>/card (Markdown)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import NotFound

from service.api.body import requested_version
from service.api.deps import Deps
from service.api.responses import json_response


def create_models_blueprint(deps: Deps) -> Blueprint:
    bp = Blueprint("models", __name__)
    registry = deps.registry

    @bp.get("/v1/models")
    def list_models() -> Response:
        models: list[dict[str, Any]] = []
        for s in registry.statuses:
            entry: dict[str, Any] = {
                "name": s.name,
                "version": s.version,
                "default": s.default,
                "ready": s.ready,
            }
            if s.default_reason is not None:
                entry["default_reason"] = s.default_reason
            if s.model is not None:
                entry["sha256"] = s.model.sha256
                entry["outcome"] = s.model.kind.outcome
            if s.reason is not None:
                entry["reason"] = s.reason
            models.append(entry)
        return json_response({"models": models})

    @bp.get("/v1/models/<name>")
    def manifest(name: str) -> Response:
        return json_response(registry.get(name, requested_version(request)).manifest.raw)

    @bp.get("/v1/models/<name>/card")
    def card(name: str) -> Response:
        model = registry.get(name, requested_version(request))
        if model.card is None:
            raise NotFound(f"model {model.name} {model.version} ships no model card")
        return Response(model.card, mimetype="text/markdown")

    return bp
