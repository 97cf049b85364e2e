"""service/fhir_fetch.py without a server: template rendering, allow-list matching, paging bounds
(httpx.MockTransport). The HTTP behaviours are in tests/fhirserver/ against real servers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.config import ConfigError, load_settings
from service.fhir_fetch import FetchFailed, FetchPolicy, FhirFetcher, render

TEMPLATES = {"lab": "Observation?patient={{context.patientId}}&code=http://loinc.org|2524-7"}
AUTH = {"access_token": "tok", "token_type": "Bearer"}


def test_context_values_are_url_encoded_so_they_cannot_add_search_parameters() -> None:
    query = render(TEMPLATES["lab"], {"patientId": "p-1&_count=100000#x"})
    assert query == "Observation?patient=p-1%26_count%3D100000%23x&code=http://loinc.org|2524-7"
    with pytest.raises(FetchFailed) as err:
        render("Observation?encounter={{context.encounterId}}", {"patientId": "p"})
    assert err.value.outcome == "client_error"


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("https://ehr.example.org/fhir", True),
        ("https://ehr.example.org/fhir/", True),
        ("https://EHR.example.org:443/fhir/r4", True),
        ("https://ehr.example.org/fhirx", False),
        ("https://ehr.example.org.evil.test/fhir", False),
        ("https://user:pw@ehr.example.org/fhir", False),
        ("http://ehr.example.org/fhir", False),
        ("https://ehr.example.org:8443/fhir", False),
        ("ftp://ehr.example.org/fhir", False),
    ],
)
def test_allow_list_matching(server: str, allowed: bool) -> None:
    fetcher = FhirFetcher(FetchPolicy(allowed_servers=("https://ehr.example.org/fhir",)))
    try:
        assert (fetcher.server_allowed(server) is not None) is allowed
    finally:
        fetcher.close()


def paged(pages: int, next_host: str = "ehr.example.org") -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        page = int(request.url.params.get("page", "1"))
        body: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": {"resourceType": "Observation", "id": f"o{page}"}}],
        }
        if page < pages:
            body["link"] = [
                {"relation": "next", "url": f"https://{next_host}/fhir/Observation?page={page + 1}"}
            ]
        return httpx.Response(200, json=body, headers={"Content-Type": "application/fhir+json"})

    return httpx.MockTransport(handler)


def fill(
    transport: httpx.MockTransport, max_pages: int = 5
) -> tuple[dict[str, Any], dict[str, str]]:
    policy = FetchPolicy(allowed_servers=("https://ehr.example.org/fhir",), max_pages=max_pages)
    fetcher = FhirFetcher(policy, client=httpx.Client(transport=transport))
    try:
        result = fetcher.fill(
            TEMPLATES, {}, "https://ehr.example.org/fhir", AUTH, {"patientId": "p-1"}
        )
    finally:
        fetcher.close()
    return result.prefetch, {k: v.outcome for k, v in result.failures.items()}


def test_pages_are_merged_and_a_bound_leaves_the_next_link() -> None:
    prefetch, failures = fill(paged(3))
    assert failures == {}
    assert [e["resource"]["id"] for e in prefetch["lab"]["entry"]] == ["o1", "o2", "o3"]
    assert "link" not in prefetch["lab"]
    prefetch, _ = fill(paged(3), max_pages=2)
    assert [e["resource"]["id"] for e in prefetch["lab"]["entry"]] == ["o1", "o2"]
    assert prefetch["lab"]["link"][0]["relation"] == "next"  # incomplete: extract says so


def test_a_next_link_off_the_server_is_refused() -> None:
    _, failures = fill(paged(3, next_host="169.254.169.254"))
    assert failures == {"lab": "not_fhir"}


def test_absent_keys_only_and_nothing_without_server_or_token() -> None:
    fetcher = FhirFetcher(FetchPolicy(allowed_servers=("https://ehr.example.org/fhir",)))
    try:
        null = fetcher.fill(TEMPLATES, {"lab": None}, "https://ehr.example.org/fhir", AUTH, {})
        assert null.prefetch == {"lab": None} and not null.failures
        for server, auth in ((None, AUTH), ("https://ehr.example.org/fhir", None)):
            none = fetcher.fill(TEMPLATES, {}, server, auth, {"patientId": "p"})
            assert none.prefetch == {} and not none.failures
        basic = fetcher.fill(
            TEMPLATES,
            {},
            "https://ehr.example.org/fhir",
            {"access_token": "x", "token_type": "Basic"},
            {"patientId": "p"},
        )
        assert basic.failures["lab"].outcome == "client_error"
    finally:
        fetcher.close()


def test_fetch_settings_are_checked() -> None:
    s = load_settings({"ECMO_FHIR_SERVER_ALLOWLIST": "https://a.example/fhir, https://b.example"})
    assert s.fhir_server_allowlist == ("https://a.example/fhir", "https://b.example")
    for env in (
        {"ECMO_FHIR_SERVER_ALLOWLIST": "http://a.example/fhir"},  # http needs the flag
        {"ECMO_FHIR_SERVER_ALLOWLIST": "a.example/fhir"},
        {"ECMO_FHIR_SERVER_ALLOWLIST": "https://u:p@a.example/fhir"},
        {"ECMO_FHIR_DEADLINE_SECONDS": "40"},  # not below ECMO_TIMEOUT (30)
        {"ECMO_FHIR_TIMEOUT_SECONDS": "abc"},
    ):
        with pytest.raises(ConfigError):
            load_settings(env)
    ok = load_settings(
        {"ECMO_FHIR_SERVER_ALLOWLIST": "http://127.0.0.1:9/fhir", "ECMO_FHIR_ALLOW_HTTP": "true"}
    )
    assert ok.fhir_allow_http
