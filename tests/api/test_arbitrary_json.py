"""Property: whatever JSON arrives in a request body, the answer is never a 5xx, and every error is
the problem+json shape. Issue 14: schemathesis draws valid Unicode and finite numbers only, so
hypothesis draws here what it does not: any code point including lone surrogates (sent as
`\\udXXX` escapes, as a JSON encoder writes them), integers far beyond a double, NaN/Infinity,
number literals such as 1e999, and nesting hundreds of levels deep. Each value goes in place of
some part of a valid request (or as a member of any object in it, or as the whole body) of every
protocol: the JSON API single and batch, the Open Inference Protocol, CDS Hooks and its feedback.
The autouse no_5xx plugin (tests/contract/no_5xx.py) fails the test on any 5xx too.

The same bodies go, as raw bytes, to real servers through both entry points (gunicorn alone, and
nginx in front as deployed: tests/server.py ENTRY_POINTS), whose access logs are checked for 5xx
when they stop (tests/server.py running()).

Bounded (derandomised, a fixed number of examples per endpoint) so it runs in seconds.
"""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cds.fhir import LOCAL, LOINC, bundle, cds_request, observation
from tests.factories import ICH_INPUTS, WEANING_INPUTS
from tests.server import ENTRY_POINTS, Server, gunicorn

MARK = "@@RAW@@"  # a string the serialised body carries where a raw JSON fragment goes

OIP_WEANING = {
    "id": "r-1",
    "inputs": [
        {"name": "apache_ii", "shape": [1], "datatype": "INT64", "data": [22]},
        {"name": "vis_0h", "shape": [1, 1], "datatype": "FP64", "data": [[40]]},
        {"name": "vis_24h", "shape": [1], "datatype": "FP64", "data": [12]},
        {
            "name": "lactate_24h",
            "shape": [1],
            "datatype": "FP64",
            "data": [2.8],
            "parameters": {"unit": "mmol/L"},
        },
    ],
    "outputs": [{"name": "probability"}],
}
FEEDBACK = {
    "feedback": [
        {
            "card": "c-1",
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "clinical-judgement"}, "userComment": "x"},
            "outcomeTimestamp": "2026-11-23T10:00:00Z",
        }
    ]
}
ENDPOINTS: dict[str, Any] = {
    "/v1/models/weaning/predict": {"inputs": WEANING_INPUTS, "patient_reference": "Patient/1"},
    "/v1/models/ich/predict": {"inputs": ICH_INPUTS, "correlation_id": "c"},
    "/v1/models/weaning/predict/batch": {
        "patients": [{"inputs": WEANING_INPUTS, "patient_reference": "Patient/1"}]
    },
    "/v2/models/weaning/infer": OIP_WEANING,
    "/cds-services/ecmo-weaning-risk": cds_request(
        {
            "apache": bundle(observation(LOINC, "9264-3", 22, "{score}", hours_ago=20)),
            "lactate": bundle(observation(LOINC, "2524-7", 2.8, "mmol/L", hours_ago=2)),
            "vis": bundle(
                observation(LOCAL, "vis-0h", 40, "{score}", hours_ago=30),
                observation(LOCAL, "vis-24h", 12, "{score}", hours_ago=6),
            ),
        }
    ),
    "/cds-services/ecmo-weaning-risk/feedback": FEEDBACK,
}

# Text over every code point: st.characters() never draws surrogates (category Cs) unless its
# range holds nothing else, so they are drawn from a range of their own and mixed in.
any_char = st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
any_text = st.lists(any_char, max_size=8).map("".join)
raw_numbers = st.sampled_from(
    ["1e999", "-1E400", "1" + "0" * 400, "-" + "9" * 330, "1e-999", "0.0e99999", "-0"]
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(any_text, inner, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def fragments(draw: st.DrawFn) -> str:
    """A raw JSON fragment: an arbitrary value (as json.dumps writes it: surrogates escaped,
    NaN/Infinity as those literals), a number literal no encoder writes, or a deep nesting."""
    kind = draw(st.sampled_from(["value", "surrogate", "number", "deep"]))
    if kind == "number":
        return draw(raw_numbers)
    if kind == "surrogate":
        lone = draw(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
        return json.dumps(draw(any_text) + lone + draw(any_text))
    if kind == "deep":
        depth = draw(st.integers(min_value=2, max_value=1500))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = draw(st.sampled_from(["40", '"x"', "[40]", "1e999"]))
        return opener * depth + inner + closer * depth
    return json.dumps(draw(json_values))


def places(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the document (the empty path is the whole body)."""
    found = [path]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(places(value, (*path, key)))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            found.extend(places(value, (*path, i)))
    return found


@st.composite
def bodies(draw: st.DrawFn, valid: Any) -> bytes:
    """The valid body with one place (or a new member of one of its objects) replaced by a raw
    fragment; the empty place replaces the whole body. One place only: the rest stays valid, so
    the value reaches the code behind the schema (a second bad value would stop it at a 422)."""
    document = copy.deepcopy(valid)
    path = draw(st.sampled_from(places(document)))
    if not path:
        document = MARK
    else:
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        target = parent[path[-1]]
        if isinstance(target, dict) and draw(st.booleans()):
            target[draw(any_text)] = MARK  # a new member, its name any text
        else:
            parent[path[-1]] = MARK
    fragment = draw(fragments())
    return json.dumps(document).replace(json.dumps(MARK), fragment, 1).encode("ascii")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_arbitrary_json_in_any_part_of_a_request_is_never_a_server_error(
    client: FlaskClient, endpoint: str
) -> None:
    # About eight draws per place (so each place and kind of fragment is likely drawn twice), at
    # most 300: CDS Hooks bodies have ~130 places.
    @settings(
        max_examples=min(8 * len(places(ENDPOINTS[endpoint])), 300),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies(ENDPOINTS[endpoint]))
    def check(body: bytes) -> None:
        r = client.post(endpoint, data=body, content_type="application/json")
        assert r.status_code < 500, (r.status_code, body[:300], r.data[:300])
        if r.status_code >= 400:
            assert r.mimetype == "application/problem+json", r.data[:300]
            json.loads(r.data)  # and valid JSON: nothing unencodable was echoed

    check()


def test_the_valid_bodies_the_property_starts_from_are_answered_200(client: FlaskClient) -> None:
    for endpoint, body in ENDPOINTS.items():
        r = client.post(endpoint, json=body)
        assert r.status_code == 200, (endpoint, r.get_json())


@pytest.fixture(scope="module", params=list(ENTRY_POINTS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with gunicorn(
        tmp_path_factory.mktemp(f"arbitrary-{request.param}"), ENTRY_POINTS[request.param]
    ) as s:
        yield s


def _post(port: int, path: str, body: bytes) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_arbitrary_json_through_a_real_server_is_never_a_server_error(
    served: Server, endpoint: str
) -> None:
    # The body goes as drawn (http.client sends bytes as given); fewer draws than in-process.
    @settings(
        max_examples=min(2 * len(places(ENDPOINTS[endpoint])), 100),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies(ENDPOINTS[endpoint]))
    def check(body: bytes) -> None:
        status, ctype, data = _post(served.port, endpoint, body)
        assert status < 500, (status, body[:300], data[:300])
        if status >= 400:
            assert ctype.startswith("application/problem+json"), data[:300]
            json.loads(data)

    check()
