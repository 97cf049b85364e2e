"""One synthetic ICU patient as a German (MII-style) and a US (US Core-style) EHR records it
gets the same card (issue 15). The fixtures are tests/cds/ehr/*.json, dated around
2026-12-04T12:00Z; the test moves every dateTime so that instant is now. Run with -s to see the
cards."""

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
