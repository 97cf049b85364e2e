"""A prediction as a FHIR R4 RiskAssessment (http://hl7.org/fhir/R4/riskassessment.html).

Built from the JSON API's prediction body (api/predict.prediction_body and column_bodies give the
same keys), so the JSON answer, the FHIR answer and the CDS card's suggestion carry the same
numbers. What each element holds:

- status `final`; `occurrenceDateTime` when the prediction was made;
- `subject` (Patient reference, required by R4) and `encounter` when known;
- `method`: the model, coded in METHOD_SYSTEM with its version (and sha256 in the text);
- `code`: what was assessed, coded in ASSESSMENT_SYSTEM;
- `basis`: the Observations and Conditions the inputs were read from, when they came from FHIR
  (the CDS Hooks path; the JSON API's inputs have no FHIR identity);
- `prediction[0]`: `outcome` (SNOMED CT where a code exists, else OUTCOME_SYSTEM),
  `probabilityDecimal` (0..1), `qualitativeRisk` from the risk band (HL7 risk-probability code
  plus the band's own code in BAND_SYSTEM);
- `note`: the contributions as Markdown for people;
- extensions (defined here, documented in README and openapi.yaml) for machines:
  CONTRIBUTION_URL, one per feature, with sub-extensions feature (valueCode), label
  (valueString), value (valueDecimal), unit (valueString), logOdds (valueDecimal); and
  BASELINE_URL (valueDecimal): the log-odds of the derivation cohort's average patient, from
  which the contributions add up to this patient's log-odds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

METHOD_SYSTEM = "urn:ecmo-risk-service:model"
ASSESSMENT_SYSTEM = "urn:ecmo-risk-service:assessment"
OUTCOME_SYSTEM = "urn:ecmo-risk-service:outcome"
BAND_SYSTEM = "urn:ecmo-risk-service:risk-band"
PREDICTION_ID_SYSTEM = "urn:ecmo-risk-service:prediction"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
SNOMED = "http://snomed.info/sct"
EXTENSION_BASE = "https://ecmo-risk-service.example.org/fhir/StructureDefinition"
CONTRIBUTION_URL = f"{EXTENSION_BASE}/risk-contribution"
BASELINE_URL = f"{EXTENSION_BASE}/risk-baseline-log-odds"

OUTCOMES: dict[str, dict[str, str]] = {
    "ich": {"system": SNOMED, "code": "1386000", "display": "Intracranial hemorrhage"},
    "weaning": {
        "system": OUTCOME_SYSTEM,
        "code": "weaned",
        "display": "Successful weaning from VA-ECMO",
    },
}
"""Outcome codings per model kind; no SNOMED CT concept names successful ECMO weaning."""

BAND_TO_RISK_PROBABILITY = {
    "negligible": "negligible",
    "low": "low",
    "intermediate": "moderate",
    "moderate": "moderate",
    "medium": "moderate",
    "high": "high",
}
"""Our band names -> http://terminology.hl7.org/CodeSystem/risk-probability codes."""

SUBJECT_REFERENCE = re.compile(r"^(Patient|Group)/[A-Za-z0-9\-.]{1,64}$")
ENCOUNTER_REFERENCE = re.compile(r"^Encounter/[A-Za-z0-9\-.]{1,64}$")
BASIS_TYPES = ("Observation", "Condition", "MedicationAdministration", "Procedure")


def is_subject_reference(value: str) -> bool:
    return SUBJECT_REFERENCE.match(value) is not None


def _decimal(value: float) -> float:
    # FHIR decimals are JSON numbers; round away float noise beyond what any reader uses.
    return float(f"{value:.10g}")


def contributions_note(body: Mapping[str, Any]) -> str:
    lines = [
        f"Predicted probability {body['probability']:.4f} ({body['risk_band']['name']} band). "
        "Contributions to the log-odds, relative to the derivation cohort's average patient "
        f"(log-odds {body['baseline_log_odds']:+.3f}):",
        "",
    ]
    for c in body["contributions"]:
        unit = "" if c["unit"] in ("yes/no", "") else f" {c['unit']}"
        lines.append(
            f"- {c['label']}: {c['value']:.4g}{unit}, {c['direction']} ({c['log_odds']:+.3f})"
        )
    for w in body.get("warnings", ()):
        lines.append(f"- Warning: {w['message']}")
    return "\n".join(lines)


def _contribution_extension(c: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "url": CONTRIBUTION_URL,
        "extension": [
            {"url": "feature", "valueCode": c["feature"]},
            {"url": "label", "valueString": c["label"]},
            {"url": "value", "valueDecimal": _decimal(c["value"])},
            {"url": "unit", "valueString": c["unit"]},
            {"url": "logOdds", "valueDecimal": _decimal(c["log_odds"])},
        ],
    }


def risk_assessment(
    body: Mapping[str, Any],
    model: Mapping[str, str],
    kind: str,
    subject: str,
    occurrence: datetime,
    *,
    encounter: str | None = None,
    basis: Sequence[str] = (),
    identifier: str | None = None,
) -> dict[str, Any]:
    """One RiskAssessment. body: a JSON API prediction body; model: {name, version, sha256}."""
    band = body["risk_band"]["name"]
    qualitative: list[dict[str, str]] = []
    if band in BAND_TO_RISK_PROBABILITY:
        code = BAND_TO_RISK_PROBABILITY[band]
        qualitative.append(
            {"system": RISK_PROBABILITY, "code": code, "display": f"{code.capitalize()} likelihood"}
        )
    qualitative.append({"system": BAND_SYSTEM, "code": band, "display": f"{band} risk band"})
    outcome = OUTCOMES.get(kind, {"system": OUTCOME_SYSTEM, "code": kind, "display": kind})
    name, version = model["name"], model["version"]
    resource: dict[str, Any] = {"resourceType": "RiskAssessment"}
    extensions = [_contribution_extension(c) for c in body["contributions"]]
    extensions.append({"url": BASELINE_URL, "valueDecimal": _decimal(body["baseline_log_odds"])})
    resource["extension"] = extensions
    if identifier is not None:
        resource["identifier"] = [{"system": PREDICTION_ID_SYSTEM, "value": identifier}]
    resource["status"] = "final"
    resource["method"] = {
        "coding": [
            {
                "system": METHOD_SYSTEM,
                "version": version,
                "code": name,
                "display": f"{name} model {version}",
            }
        ],
        "text": f"{name} model {version} (artifact sha256 {model.get('sha256', 'unknown')})",
    }
    resource["code"] = {
        "coding": [
            {"system": ASSESSMENT_SYSTEM, "code": kind, "display": f"ECMO {kind} risk assessment"}
        ],
        "text": f"Risk of {body['outcome']}",
    }
    resource["subject"] = {"reference": subject}
    if encounter is not None:
        resource["encounter"] = {"reference": encounter}
    resource["occurrenceDateTime"] = occurrence.isoformat(timespec="seconds").replace("+00:00", "Z")
    refs = list(dict.fromkeys(basis))
    if refs:
        resource["basis"] = [{"reference": r} for r in refs]
    resource["prediction"] = [
        {
            "outcome": {"coding": [outcome], "text": body["outcome"]},
            "probabilityDecimal": _decimal(body["probability"]),
            "qualitativeRisk": {"coding": qualitative, "text": band},
        }
    ]
    resource["note"] = [{"text": contributions_note(body)}]
    return resource


def collection(resources: Iterable[Mapping[str, Any]], timestamp: datetime) -> dict[str, Any]:
    """A batch as a Bundle of type collection (each entry with a urn:uuid fullUrl)."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timestamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": dict(r)} for r in resources],
    }


def basis_references(prefetch: Mapping[str, Any], paths: Iterable[str]) -> list[str]:
    """FHIR references (Type/id) of the resources at paths like prefetch.<key>.entry[<i>].resource
    in a (prefetched or fetched) prefetch; resources without an id are left out."""
    out: list[str] = []
    pattern = re.compile(r"^prefetch\.([^.]+)\.entry\[(\d+)\]\.resource$")
    for path in paths:
        m = pattern.match(path)
        if m is None:
            continue
        bundle = prefetch.get(m.group(1))
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        index = int(m.group(2))
        if not isinstance(entries, list) or index >= len(entries):
            continue
        entry = entries[index]
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if (
            rtype in BASIS_TYPES
            and isinstance(rid, str)
            and re.match(r"^[A-Za-z0-9\-.]{1,64}$", rid)
        ):
            out.append(f"{rtype}/{rid}")
    return list(dict.fromkeys(out))
