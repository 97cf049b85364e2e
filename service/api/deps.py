"""What the blueprints receive from the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.core.registry import Registry
from service.telemetry import Metrics


@dataclass(frozen=True)
class Deps:
    settings: Settings
    registry: Registry
    metrics: Metrics
