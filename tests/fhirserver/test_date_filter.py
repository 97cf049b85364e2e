"""The service's own FHIR searches carry an absolute date filter for window-bounded keys (issue 15,
item 6), against the real FHIR server (tests/fhirserver/server.cjs): Observation date=ge...,
MedicationAdministration effective-time=ge..., computed at request time from the inputs'
windows. CDS Hooks 2.0 prefetch templates cannot say "the last 7 days", so the advertised
templates carry none; the exact window is still applied by the extractor.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.core.fhir import load_mappings
from service.fhir_fetch import render, with_date_filter
from tests.cds import fhir
from tests.cds.test_ehr_examples import ANCHOR, EHR, moved
from tests.fhirserver.harness import FhirServer
from tests.fhirserver.test_fetch import ICH, SHIPPED_MAPPINGS, WEANING, call, make_app

DATED = "p-dated"


def small_pages(tmp_path: Path) -> Path:
    """The shipped mappings with _count=2 in every template (several pages per key)."""
    for name in ("weaning.json", "ich.json"):
        doc = json.loads((SHIPPED_MAPPINGS / name).read_text())
        doc["prefetch"] = {
            k: re.sub(r"_count=\d+", "_count=2", v) for k, v in doc["prefetch"].items()
        }
        (tmp_path / name).write_text(json.dumps(doc))
    return tmp_path


def test_the_date_filter_is_absolute_and_per_resource_type() -> None:
    since = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
    assert with_date_filter("Observation?patient=p&_count=2", since) == (
        "Observation?patient=p&_count=2&date=ge2026-11-27T12%3A00%3A00Z"
    )
    assert with_date_filter("MedicationAdministration?patient=p", since).endswith(
        "&effective-time=ge2026-11-27T12%3A00%3A00Z"
    )
    assert with_date_filter("Basic?patient=p", since) == "Basic?patient=p"


def _load_dated(server: FhirServer) -> None:
    """Seven days of platelets (3, all usable) after 20 older counts beyond the 168-h window."""
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": DATED}]
    ich = fhir.ich_prefetch()
    for key in ("gwr", "stroke", "ffp"):
        for entry in ich[key]["entry"]:
            r = copy.deepcopy(entry["resource"])
            r["id"] = f"{r['id']}-dated"
            r["subject"] = {"reference": f"Patient/{DATED}"}
            resources.append(r)
    counts = [(95, 2), (71, 30), (88, 100)] + [(40 + i, 200 + 10 * i) for i in range(20)]
    for i, (count, hours) in enumerate(counts):
        obs = fhir.observation(fhir.LOINC, "777-3", count, "10*9/L", hours_ago=hours)
        obs["id"] = f"plt-dated-{i}"
        obs["subject"] = {"reference": f"Patient/{DATED}"}
        resources.append(obs)
    server.create_all(resources)


def test_the_server_answers_the_filtered_search_with_the_window_only(
    fhir_srv: FhirServer, model_dir: Path
) -> None:
    """The query the fetcher sends for the platelets key (template + date=ge) is one a real
    server understands: 3 of the 23 counts are within 168 h."""
    _load_dated(fhir_srv)
    now = datetime.now(UTC)
    mapping = load_mappings()["ecmo-ich-risk"]
    query = render(mapping.prefetch["platelets"], {"patientId": DATED})
    with fhir_srv.client() as c:
        unfiltered = c.get(f"/{query}").json()
        filtered = c.get(f"/{with_date_filter(query, mapping.search_since(now)['platelets'])}")
    assert unfiltered["total"] == 23
    assert filtered.json()["total"] == 3
    client = make_app(model_dir, (fhir_srv.url,)).test_client()
    r = call(client, ICH, None, fhir_srv.url, patient=DATED)
    assert r.status_code == 200, r.get_json()
    assert "| 71 | 10*9/L |" in r.get_json()["cards"][0]["detail"]  # the minimum of the week


def _as_stored(record: str, prefix: str) -> tuple[str, list[dict[str, Any]]]:
    """A tests/cds/ehr record's resources moved to now, with ids (and references) prefixed."""
    body = moved(json.loads((EHR / record).read_text()), datetime.now(UTC) - ANCHOR)
    patient = body["context"]["patientId"]
    out: list[dict[str, Any]] = [{"resourceType": "Patient", "id": patient}]
    for bundle in body["prefetch"].values():
        for entry in bundle["entry"]:
            r = copy.deepcopy(entry["resource"])
            r["id"] = f"{prefix}-{r['id']}"
            ref = r.get("medicationReference")
            if ref is not None:
                ref["reference"] = ref["reference"].replace("Medication/", f"Medication/{prefix}-")
            out.append(r)
    return patient, out


@pytest.mark.parametrize("record", ["weaning_patient_de.json", "weaning_patient_us.json"])
def test_a_fetched_record_gives_the_prefetched_card(
    fhir_srv: FhirServer, model_dir: Path, tmp_path: Path, record: str
) -> None:
    """The German record's Medications come in by _include; administrations of an earlier
    stay (40 days ago, added here) are left out by effective-time=ge."""
    prefix = "w" + record.removesuffix(".json")[-2:]  # wde, wus (FHIR ids: no underscore)
    patient, resources = _as_stored(record, prefix)
    template = next(r for r in resources if r["resourceType"] == "MedicationAdministration")
    olds = []
    for i in range(6):  # an earlier stay: 40 days ago
        old = copy.deepcopy(template)
        old["id"] = f"{prefix}-ma-old-{i}"
        long_ago = datetime.now(UTC) - timedelta(days=40, hours=i)
        old["status"] = "completed"
        old["effectivePeriod"] = {
            "start": long_ago.isoformat(),
            "end": (long_ago + timedelta(hours=2)).isoformat(),
        }
        olds.append(old)
    fhir_srv.create_all([*resources, *olds])
    # Pages of 2, at most 4 read: the administrations of this stay (6 or 7) fit, and all of
    # them must be read (rates at a time need a complete Bundle); with the 6 old ones they
    # would not, and the answer would be 412 incomplete.
    client = make_app(
        model_dir, (fhir_srv.url,), fhir_mapping_dir=small_pages(tmp_path), fhir_max_pages=4
    ).test_client()
    prefetched = json.loads((EHR / record).read_text())
    body = moved(prefetched, datetime.now(UTC) - ANCHOR)
    direct = client.post(WEANING, json=body)
    fetched = call(client, WEANING, None, fhir_srv.url, patient=patient)
    assert direct.status_code == 200, direct.get_json()
    assert fetched.status_code == 200, fetched.get_json()
    p = [
        r.get_json()["cards"][0]["extension"]["ecmo-risk-service"]["probability"]
        for r in (direct, fetched)
    ]
    assert p[0] == pytest.approx(p[1], rel=1e-12)
