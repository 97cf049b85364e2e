"""HTTP adapters, one package per protocol (v1/: the JSON API, oip/: Open Inference Protocol,
cds/: CDS Hooks) and the shared pieces beside them (body, errors, responses, deps, health,
metrics). Each exposes a blueprint factory that receives its dependencies."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask

from service.api.cds.hooks import create_cds_blueprint
from service.api.deps import Deps
from service.api.health import create_health_blueprint
from service.api.metrics import create_metrics_blueprint
from service.api.oip import create_oip_blueprint
from service.api.pages import create_pages_blueprint
from service.api.v1.models import create_models_blueprint
from service.api.v1.predict import create_predict_blueprint
from service.api.why import create_why_blueprint

BLUEPRINT_FACTORIES: tuple[Callable[[Deps], Blueprint], ...] = (
    create_health_blueprint,
    create_metrics_blueprint,
    create_models_blueprint,
    create_predict_blueprint,
    create_cds_blueprint,
    create_oip_blueprint,
    create_pages_blueprint,
    create_why_blueprint,
)


def register_blueprints(app: Flask, deps: Deps) -> None:
    for factory in BLUEPRINT_FACTORIES:
        app.register_blueprint(factory(deps))
