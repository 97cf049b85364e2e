from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cds import fhir
from tests.fhirserver.harness import FhirServer, fhir_server

PAGED_PATIENT = "p-paged"
PLATELETS_PAGED = [140, 130, 120, 110, 100, 90, 61]
"""Platelet counts (10*9/L), newest first; the minimum is on the last page of _count=2."""


def _for(patient: str, resource: dict[str, Any], suffix: str) -> dict[str, Any]:
    r = copy.deepcopy(resource)
    r["id"] = f"{r['id']}-{suffix}"
    r["subject"] = {"reference": f"Patient/{patient}"}
    return r


def load_patients(server: FhirServer) -> None:
    """p-1: the weaning and ich patients of tests/cds/fhir.py; p-paged: seven platelet counts."""
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pid, "gender": "female"} for pid in ("p-1", PAGED_PATIENT)
    ]
    for key, b in {**fhir.weaning_prefetch(), **fhir.ich_prefetch()}.items():
        resources += [_for("p-1", entry["resource"], key) for entry in b["entry"]]
    ich = fhir.ich_prefetch()
    for key in ("gwr", "stroke", "ffp"):
        resources += [_for(PAGED_PATIENT, entry["resource"], key) for entry in ich[key]["entry"]]
    for i, count in enumerate(PLATELETS_PAGED):
        obs = fhir.observation(fhir.LOINC, "777-3", count, "10*9/L", hours_ago=1 + i)
        resources.append(_for(PAGED_PATIENT, obs, "plt"))
    server.create_all(resources)


@pytest.fixture(scope="session")
def fhir_srv() -> Iterator[FhirServer]:
    with fhir_server() as server:
        load_patients(server)
        yield server
