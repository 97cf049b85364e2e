"""The pure FHIR mapping (service.core.fhir): mapping files are checked at load, and the selection
rules (status, window, latest/min/sum, units) behave as documented. No Flask here."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.core.fhir import (
    MappingError,
    ServiceMapping,
    extract,
    load_mappings,
    parse_fhir_datetime,
    parse_mapping,
)
from service.errors import InvalidClinicalData, MissingClinicalData
from tests.cds import fhir
from tests.cds.fhir import LOINC, bundle, observation

SHIPPED = load_mappings()
NOW = datetime.now(UTC)


def shipped_doc(name: str) -> dict[str, Any]:
    path = Path(__file__).resolve().parents[2] / "service" / "cds_mappings" / f"{name}.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_shipped_mappings_name_the_issue_codes() -> None:
    assert set(SHIPPED) == {"ecmo-weaning-risk", "ecmo-ich-risk"}
    codes = {
        (f.input, c.system, c.code or c.code_prefix)
        for m in SHIPPED.values()
        for f in m.features
        for c in f.codes
    }
    for code in ("2524-7", "32693-4", "2518-9", "2519-7", "59032-3"):
        assert ("lactate_24h", LOINC, code) in codes
    for code in ("777-3", "26515-7"):
        assert ("min_platelets", LOINC, code) in codes
    assert ("min_platelets", LOINC, "49497-1") not in codes  # a smear estimate (issue 15)
    assert ("apache_ii", LOINC, "9264-3") in codes
    assert ("stroke_history", "http://snomed.info/sct", "230690007") in codes
    assert ("stroke_history", "http://hl7.org/fhir/sid/icd-10", "I63") in codes


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["features"].pop(0), "required"),
        (lambda d: d["features"][0].update(input="creatinine"), "not an input"),
        (lambda d: d["features"][1].update(select="sum", value="number"), "needs a unit"),
        (lambda d: d["features"][1].update(select="average"), "select"),
        (lambda d: d["features"][1].update(prefetch="nope"), "prefetch"),
        (lambda d: d["features"][1].update(window_hours=None), "window_hours"),
        (lambda d: d["features"][1].update(codes=[]), "codes"),
        (lambda d: d["features"][1]["codes"][0].pop("code"), "exactly one of code"),
        (lambda d: d.update(mapping_version=2), "mapping_version"),
        (lambda d: d["service"].update(hook="order-sign"), "patient-view"),
        # a latest lactate has no meaning when nothing was recorded: null stays 412
        (lambda d: d["features"][1].update(when_prefetch_null="none"), "when_prefetch_null"),
        (lambda d: d["features"][1].update(when_prefetch_null=""), "when_prefetch_null"),
        (lambda d: d["features"][1]["codes"].append({"value_set": "no-such-set"}), "no-such-set"),
        (lambda d: d["features"][1]["codes"].append({"value_set": "../ich"}), "value set name"),
    ],
)
def test_a_bad_mapping_file_is_refused_naming_the_field(edit: Any, message: str) -> None:
    doc = copy.deepcopy(shipped_doc("weaning"))
    edit(doc)
    with pytest.raises(MappingError, match=message):
        parse_mapping(doc, "weaning.json")


def test_a_time_window_on_a_condition_input_is_refused_not_ignored() -> None:
    doc = copy.deepcopy(shipped_doc("ich"))
    stroke = next(f for f in doc["features"] if f["input"] == "stroke_history")
    stroke["window_hours"] = 24
    with pytest.raises(MappingError, match="window_hours does not apply to Condition"):
        parse_mapping(doc, "ich.json")


def test_a_missing_mapping_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="does not exist"):
        load_mappings(tmp_path / "absent")


def mapping(service_id: str = "ecmo-weaning-risk") -> ServiceMapping:
    return SHIPPED[service_id]


def lactate_from(*observations: dict[str, Any]) -> Any:
    prefetch = fhir.weaning_prefetch()
    prefetch["lactate"] = bundle(*observations)
    return extract(mapping(), prefetch, NOW).inputs["lactate_24h"]


def test_the_latest_observation_in_the_window_wins_whatever_its_unit() -> None:
    got = lactate_from(
        observation(LOINC, "2524-7", 3.0, "mmol/L", hours_ago=5),
        observation(LOINC, "59032-3", 18.0, "mg/dL", hours_ago=1),
    )
    assert got == {"value": 18.0, "unit": "mg/dL"}  # resolve() converts it, as for the JSON API


def test_amended_and_corrected_are_used_but_not_cancelled() -> None:
    got = lactate_from(
        observation(LOINC, "2524-7", 3.0, "mmol/L", hours_ago=3, status="corrected"),
        observation(LOINC, "2524-7", 9.0, "mmol/L", hours_ago=1, status="cancelled"),
    )
    assert got == {"value": 3.0, "unit": "mmol/L"}


def test_an_observation_from_the_future_is_not_used() -> None:
    got = lactate_from(
        observation(LOINC, "2524-7", 3.0, "mmol/L", hours_ago=3),
        observation(LOINC, "2524-7", 9.0, "mmol/L", hours_ago=-2),
    )
    assert got == {"value": 3.0, "unit": "mmol/L"}


def test_the_minimum_platelet_count_is_compared_in_one_unit() -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["platelets"] = bundle(
        observation(LOINC, "777-3", 60, "10*3/uL", hours_ago=2),
        observation(LOINC, "777-3", 55000, "/uL", hours_ago=3),  # 55 x10^9/L: the minimum
        observation(LOINC, "777-3", 40, "10*3/uL", hours_ago=200),  # outside 168 h
    )
    got = extract(mapping("ecmo-ich-risk"), prefetch, NOW)
    assert got.inputs["min_platelets"] == {"value": 55000.0, "unit": "/uL"}
    source = got.extracted["min_platelets"].sources[0]
    assert source.path == "prefetch.platelets.entry[1].resource"


def test_ffp_is_summed_in_millilitres() -> None:
    got = extract(mapping("ecmo-ich-risk"), fhir.ich_prefetch(), NOW)
    assert got.inputs["ffp_volume"] == {"value": 400.0, "unit": "mL"}
    assert len(got.extracted["ffp_volume"].sources) == 2


def test_a_bad_date_is_invalid_and_every_bad_element_is_reported() -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["lactate"] = bundle(
        observation(LOINC, "2524-7", 3.0, "mmol/L", effectiveDateTime="yesterday"),
        observation(LOINC, "2524-7", 3.0, "mEq/L"),
    )
    prefetch["apache"] = bundle(observation(LOINC, "9264-3", 20, "{score}", status=None))
    with pytest.raises(InvalidClinicalData) as info:
        extract(mapping(), prefetch, NOW)
    paths = sorted(e.path for e in info.value.errors)
    assert paths == [
        "prefetch.apache.entry[0].resource.status",
        "prefetch.lactate.entry[0].resource.effectiveDateTime",
        "prefetch.lactate.entry[1].resource.valueQuantity.code",
    ]


def test_a_string_value_cannot_be_read_as_a_number() -> None:
    prefetch = fhir.weaning_prefetch()
    prefetch["apache"] = bundle(observation(LOINC, "9264-3", None, valueString="22"))
    with pytest.raises(InvalidClinicalData) as info:
        extract(mapping(), prefetch, NOW)
    assert info.value.errors[0].path == "prefetch.apache.entry[0].resource.valueString"


def test_missing_data_names_every_feature() -> None:
    with pytest.raises(MissingClinicalData) as info:
        extract(mapping("ecmo-ich-risk"), {}, NOW)
    assert "grey-white matter ratio" in info.value.detail
    assert "minimum platelet count" in info.value.detail
    assert len(info.value.errors) == 5  # FFP: both sources, transfusions and the local volume


def test_a_date_without_time_is_too_coarse_for_an_hour_window() -> None:
    assert parse_fhir_datetime("2026-11-23") is None
    assert parse_fhir_datetime("2026-11-23T10:00:00+01:00") == datetime(
        2026, 11, 23, 9, 0, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="time zone"):
        parse_fhir_datetime("2026-11-23T10:00:00")


def test_ffp_reads_as_zero_only_when_nothing_usable_was_skipped_but_old_records() -> None:
    prefetch = fhir.ich_prefetch()
    prefetch["ffp"] = bundle(observation(fhir.LOCAL, "ffp-volume", 300, "mL", hours_ago=400))
    got = extract(mapping("ecmo-ich-risk"), prefetch, NOW)
    assert got.inputs["ffp_volume"] == {"value": 0, "unit": "mL"}
    prefetch["ffp"] = bundle(
        observation(fhir.LOCAL, "ffp-volume", 300, "mL", hours_ago=4, status="preliminary")
    )
    with pytest.raises(MissingClinicalData, match="fresh frozen plasma"):
        extract(mapping("ecmo-ich-risk"), prefetch, NOW)
    prefetch["ffp"] = bundle(next_link=True)
    with pytest.raises(MissingClinicalData):
        extract(mapping("ecmo-ich-risk"), prefetch, NOW)


@pytest.mark.parametrize(
    "raw",
    [
        "2026",
        "2026-11",
        "2026-11-23",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00.1+01:00",
        "2026-11-23T10:00:00.123456789-05:30",
        "2026-11-23T23:59:60Z",  # a leap second is in FHIR's grammar
        "2026-11-23T10:00:00+14:00",
    ],
)
def test_every_form_of_fhirs_datetime_grammar_is_read(raw: str) -> None:
    parse_fhir_datetime(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "2026-11-23T10:00Z",  # no seconds
        "2026-11-23T10Z",  # no minutes
        "20261123",  # basic format
        "20261123T100000Z",
        "2026-W47-1",  # ISO week date
        "2026-W47",
        "2026-327",  # ordinal date
        "2026-11-23 10:00:00Z",  # space instead of T
        "2026-11-23T10:00:00+15:00",  # offset beyond FHIR's +14:00
        "2026-11-23T10:00:00+0100",  # offset without colon
        "2026-11-23T24:00:00Z",
        "2026-13-01",
        "0000-01-01",
        "2026-11-23T10:00:00z",
        " 2026-11-23",
    ],
)
def test_forms_outside_fhirs_datetime_grammar_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_fhir_datetime(raw)


def test_a_leap_second_reads_as_the_next_instant() -> None:
    assert parse_fhir_datetime("2026-12-31T23:59:60Z") == datetime(2027, 1, 1, tzinfo=UTC)


def _infusions(doc: dict[str, Any]) -> dict[str, Any]:
    feature: dict[str, Any] = next(f for f in doc["features"] if f["input"] == "infusions_24h")
    return feature


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: _infusions(d).pop("at"), "at is missing"),
        (
            lambda d: _infusions(d).update(at={"event": "icu_admission", "offset_hours": 24}),
            "event",
        ),
        (lambda d: _infusions(d).update(codes=[{"value_set": "ffp-products"}]), "every one of"),
        (lambda d: _infusions(d).update(value="quantity", select="sum"), "does not fit"),
        (lambda d: d["features"][0].update(optional=True), "optional"),
        (lambda d: d["events"]["ecmo_start"].update(resource="Encounter"), "Procedure"),
        (lambda d: d["events"]["ecmo_start"]["codes"][1].update(code="8-852"), "exactly one of"),
        # without its alternative, the VIS at 24 h has no source at all
        (
            lambda d: d.update(
                features=[
                    f for f in d["features"] if f["input"] not in ("vis_24h", "infusions_24h")
                ]
            ),
            "vis_24h",
        ),
    ],
)
def test_a_bad_rates_mapping_is_refused_naming_the_field(edit: Any, message: str) -> None:
    doc = copy.deepcopy(shipped_doc("weaning"))
    edit(doc)
    with pytest.raises(MappingError, match=message):
        parse_mapping(doc, "weaning.json")


def test_the_service_searches_only_as_far_back_as_the_windows() -> None:
    since = mapping("ecmo-ich-risk").search_since(NOW)
    assert set(since) == {"gwr", "transfusions", "ffp", "platelets"}  # not the stroke history
    assert since["platelets"] == NOW - timedelta(hours=168)
    weaning = mapping().search_since(NOW)
    assert "ecmo" not in weaning  # the ECMO start may lie further back than any window
    assert weaning["vasoactives"] == NOW - timedelta(hours=720)
