"""What the blueprints receive from the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.api.cds.auth import CdsTokenVerifier
from service.config import Settings
from service.core.fhir import ServiceMapping
from service.core.registry import Registry
from service.core.scoring import Scoring
from service.explain_token import ExplainTokens
from service.fhir_fetch import FhirFetcher
from service.telemetry import Metrics


@dataclass(frozen=True)
class Deps:
    settings: Settings
    registry: Registry
    metrics: Metrics
    scoring: Scoring
    """The one scoring entry point, with the site's unit table bound."""
    cds_services: Mapping[str, ServiceMapping]
    """CDS Hooks services by id: the mapping files whose model the registry knows."""
    cds_verifier: CdsTokenVerifier | None
    """None when CDS Hooks JWT verification is off (ECMO_CDS_JWT_REQUIRED=false)."""
    fhir_fetcher: FhirFetcher | None = None
    """Fetches absent CDS prefetch keys from allow-listed FHIR servers; None when none is."""
    explain_tokens: ExplainTokens | None = None
    """Seals and opens the "why this risk" page tokens; None without ECMO_EXPLAIN_KEYS."""
