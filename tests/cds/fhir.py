"""Builders for CDS Hooks 2.0 requests with FHIR R4 prefetch, shaped like what EHRs send."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LOCAL = "http://example.org/fhir/CodeSystem/ecmo-local"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"

_ids = itertools.count(1)


def ago(hours: float) -> str:
    t = datetime.now(UTC) - timedelta(hours=hours)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def observation(
    system: str,
    code: str,
    value: float | None,
    unit: Any = None,
    hours_ago: float = 1.0,
    status: Any = "final",
    display_unit: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{next(_ids)}",
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": ago(hours_ago),
    }
    if value is not None:
        if unit is None:
            obs["valueQuantity"] = {"value": value}
        else:
            obs["valueQuantity"] = {
                "value": value,
                "unit": display_unit or unit,
                "system": UCUM,
                "code": unit,
            }
    obs.update(extra)
    return obs


def condition(
    system: str, code: str, display: str, verification: str = "confirmed"
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"cond-{next(_ids)}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "resolved",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        },
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": "Patient/p-1"},
        "onsetDateTime": "2019-03-04T10:00:00Z",
    }


def bundle(*resources: dict[str, Any], next_link: bool = False) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [
            {"relation": "self", "url": "https://ehr.example.org/fhir/Observation?patient=p-1"}
        ],
        "entry": [
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }
    if next_link:
        b["link"].append({"relation": "next", "url": "https://ehr.example.org/fhir?page=2"})
    return b


def operation_outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout", "diagnostics": text}],
    }


def weaning_prefetch() -> dict[str, Any]:
    """APACHE 22, VIS 40 -> 12 (charted), lactate 25.2 mg/dL (= 2.8 mmol/L) as the latest of three."""
    return {
        "apache": bundle(observation(LOINC, "9264-3", 22, "{score}", hours_ago=20)),
        "lactate": bundle(
            observation(LOINC, "2524-7", 2.1, "mmol/L", hours_ago=6),
            observation(LOINC, "59032-3", 25.2, "mg/dL", hours_ago=2, display_unit="mg/dL"),
            observation(LOINC, "32693-4", 3.9, "mmol/L", hours_ago=12),
            observation(LOINC, "2524-7", 9.9, "mmol/L", hours_ago=1, status="preliminary"),
        ),
        "vis": bundle(
            observation(LOCAL, "vis-0h", 40, "{score}", hours_ago=30),
            observation(LOCAL, "vis-24h", 12, None, hours_ago=6),
        ),
        # a site that charts the VIS: its administrations are not read (the charted VIS wins)
        "ecmo": bundle(),
        "vasoactives": bundle(),
        "weight": bundle(),
    }


# The same patient as the JSON API sees it (mg/dL passed through, converted by resolve()).
WEANING_INPUTS: dict[str, Any] = {
    "apache_ii": 22,
    "vis_0h": 40,
    "vis_24h": 12,
    "lactate_24h": {"value": 25.2, "unit": "mg/dL"},
}


def ich_prefetch() -> dict[str, Any]:
    """GWR 1.25; stroke history (ICD-10 I63.9); FFP 250 mL + 0.15 L; platelets min 80 of 3."""
    return {
        "gwr": bundle(observation(LOCAL, "gwr", 1.25, "1", hours_ago=30)),
        "stroke": bundle(
            condition("http://snomed.info/sct", "38341003", "Hypertensive disorder"),
            condition(ICD10, "I63.9", "Cerebral infarction, unspecified"),
        ),
        "transfusions": bundle(),  # no transfusion recorded as a MedicationAdministration
        "ffp": bundle(
            observation(LOCAL, "ffp-volume", 250, "mL", hours_ago=40),
            observation(LOCAL, "ffp-volume", 0.15, "L", hours_ago=10),
        ),
        "platelets": bundle(
            observation(LOINC, "777-3", 95, "10*3/uL", hours_ago=2),
            observation(LOINC, "26515-7", 80000, "/uL", hours_ago=30),
            observation(LOINC, "777-3", 120, "10*9/L", hours_ago=60),
        ),
    }


ICH_INPUTS: dict[str, Any] = {
    "gwr": 1.25,
    "stroke_history": True,
    "ffp_volume": {"value": 400, "unit": "mL"},
    "min_platelets": {"value": 80, "unit": "10*9/L"},
}


def cds_request(prefetch: dict[str, Any] | None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/example", "patientId": "p-1"},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(overrides)
    return body
