"""One synthetic ICU patient as a German (MII-style) and a US (US Core-style) EHR records it
gets the same card (issue 15). The fixtures are tests/cds/ehr/*.json, dated around
2026-12-04T12:00Z; the test moves every dateTime so that instant is now. Run with -s to see the
cards.

ich: GWR (local code), stroke (ICD-10-GM I63.4 / ICD-10-CM I63.412 + SNOMED), FFP transfusions
(MedicationAdministration: ISBT 128 E0869 / SNOMED 346447007, dosage.dose in mL), platelets
(/nL-style 10*9/l / 10*3/uL and /uL). weaning: APACHE II, lactate (mmol/L / mg/dL), ECMO start
(Procedure OPS 8-852.30 / SNOMED 233573008), the VIS drugs as MedicationAdministrations (German:
ATC on referenced Medications, rates in ug/kg/min, mg/h and [U]/h; US: RxNorm on
medicationCodeableConcept, ug/kg/min, ug/min and [U]/min with the body weight), no VIS charted."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.config import Settings
from service.core.fhir import parse_fhir_datetime

EHR = Path(__file__).parent / "ehr"
ANCHOR = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z)$")
SAME_PATIENT = {
    "gwr": 1.22,
    "stroke_history": True,
    "ffp_volume": {"value": 550, "unit": "mL"},
    "min_platelets": {"value": 64, "unit": "10*9/L"},
}
SAME_WEANING_PATIENT: dict[str, Any] = {
    "apache_ii": 24,
    "lactate_24h": {"value": 2.5, "unit": "mmol/L"},
    "body_weight": {"value": 80, "unit": "kg"},
    # at ECMO start (40 h before the anchor) and 24 h later, as the JSON API takes them
    "infusions_0h": {
        "norepinephrine": {"value": 0.3, "unit": "ug/kg/min", "salt": "base"},
        "dobutamine": {"value": 5, "unit": "ug/kg/min"},
        "epinephrine": {"value": 0.1, "unit": "ug/kg/min"},
        "vasopressin": {"value": 0.00025, "unit": "U/kg/min"},
    },
    "infusions_24h": {
        "norepinephrine": {"value": 0.15, "unit": "ug/kg/min", "salt": "base"},
        "vasopressin": {"value": 0.00025, "unit": "U/kg/min"},
    },
}


def moved(value: Any, shift: Any) -> Any:
    if isinstance(value, dict):
        return {k: moved(v, shift) for k, v in value.items()}
    if isinstance(value, list):
        return [moved(v, shift) for v in value]
    if isinstance(value, str) and DATETIME.match(value):
        t = parse_fhir_datetime(value)
        assert t is not None
        return (t + shift).isoformat()
    return value


@pytest.mark.parametrize("record", ["ich_patient_de.json", "ich_patient_us.json"])
def test_a_german_and_a_us_record_of_one_patient_get_the_same_card(record: str) -> None:
    client = create_app(Settings()).test_client()  # shipped models and mapping files
    body = moved(json.loads((EHR / record).read_text()), datetime.now(UTC) - ANCHOR)
    r = client.post("/cds-services/ecmo-ich-risk", json=body)
    assert r.status_code == 200, r.get_json()
    card = r.get_json()["cards"][0]
    api = client.post("/v1/models/ich/predict", json={"inputs": SAME_PATIENT}).get_json()
    print(f"\n--- {record}\n{card['indicator']} | {card['summary']}\n{card['detail']}")
    assert card["extension"]["ecmo-risk-service"]["probability"] == api["probability"]
    assert "sum of 2 administrations" in card["detail"]  # the two transfusions, 250 + 300 mL


@pytest.mark.parametrize("record", ["weaning_patient_de.json", "weaning_patient_us.json"])
def test_a_german_and_a_us_record_of_one_weaning_patient_get_the_same_card(record: str) -> None:
    """No VIS is charted: it comes from the MedicationAdministrations running at ECMO start and
    24 h later (VIS 47.5 -> 17.5), with the ECMO start from the Procedure."""
    client = create_app(Settings()).test_client()
    body = moved(json.loads((EHR / record).read_text()), datetime.now(UTC) - ANCHOR)
    r = client.post("/cds-services/ecmo-weaning-risk", json=body)
    assert r.status_code == 200, r.get_json()
    card = r.get_json()["cards"][0]
    api = client.post("/v1/models/weaning/predict", json={"inputs": SAME_WEANING_PATIENT})
    assert api.status_code == 200, api.get_json()
    expected = api.get_json()
    print(f"\n--- {record}\n{card['indicator']} | {card['summary']}\n{card['detail']}")
    assert expected["derived"]["vis_0h"] == pytest.approx(47.5)
    assert expected["derived"]["vis_24h"] == pytest.approx(17.5)
    got = card["extension"]["ecmo-risk-service"]["probability"]
    assert got == pytest.approx(expected["probability"], rel=1e-9)
    assert "running at ECMO start + 24 h" in card["detail"]
    assert "divided by the body weight 80 kg" in card["detail"]
