"""FHIR R4 for CDS Hooks: mapping files (mapping.py), element readers (values.py) and the
prefetch -> inputs extraction (extract.py). Pure: no HTTP, no FHIR server queries."""

from service.core.fhir.extract import ExtractedInput, Extraction, Source, extract
from service.core.fhir.mapping import (
    CodeMatch,
    FeatureMapping,
    MappingError,
    ServiceMapping,
    load_mappings,
    parse_mapping,
)
from service.core.fhir.values import parse_fhir_datetime

__all__ = [
    "CodeMatch",
    "ExtractedInput",
    "Extraction",
    "FeatureMapping",
    "MappingError",
    "ServiceMapping",
    "Source",
    "extract",
    "load_mappings",
    "parse_fhir_datetime",
    "parse_mapping",
]
