"""Hostile requests through a real gunicorn, over raw sockets where an HTTP client would normalise
the request (lone surrogates, number literals beyond float range, chunked framing, content codings,
oversize request lines and headers). Every answer is the service's problem+json shape, never 5xx
(the access-log check in tests/server.py runs when the server stops), on every protocol that
carries the field: the JSON API (single and batch), the Open Inference Protocol and CDS Hooks.

Each test runs through both entry points (tests/server.py ENTRY_POINTS): gunicorn alone, and nginx
in front as scripts/serve, the Dockerfile and the chart start it. The answers must be the same:
status, problem shape, rule, request id; on /v2/ also the Open Inference Protocol's `error`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cds.fhir import cds_request, weaning_prefetch
from tests.factories import WEANING_INPUTS
from tests.server import ENTRY_POINTS, Server, gunicorn

pytestmark = pytest.mark.slow

MAX_BODY = 64 * 1024
V1 = "/v1/models/weaning/predict"
BATCH = "/v1/models/weaning/predict/batch"
OIP = "/v2/models/weaning/infer"
CDS = "/cds-services/ecmo-weaning-risk"
MARK = "@@MARK@@"  # replaced in the serialised body by a raw JSON fragment
CLIENT_TIMEOUT = 3  # nginx's wait for each read of a request (ECMO_CLIENT_TIMEOUT)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def paths(self) -> list[tuple[str, str]]:
        return [(e["path"], e["rule"]) for e in self.json()["errors"]]


@pytest.fixture(scope="module", params=list(ENTRY_POINTS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Every test runs against gunicorn alone (ECMO_PROXY=off: its answers and the app's) and
    through the deployment's entry point (nginx in front: the request line, header and framing
    rejections are then nginx's, service/front.py). Both must answer alike."""
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    env = {
        "ECMO_MAX_BODY_BYTES": str(MAX_BODY),
        "ECMO_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT),
        **ENTRY_POINTS[request.param],
    }
    with gunicorn(tmp, env, workers=1) as s:
        yield s


def exchange(port: int, request: bytes) -> Answer:
    """Send request bytes as they are (from a thread, so a server that answers before reading
    everything does not block us) and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:

        def send() -> None:
            try:
                sock.sendall(request)
            except OSError:
                pass  # the server answered and closed before reading all of it

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        sender.join(timeout=20)
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body)


def post(
    port: int,
    path: str,
    body: bytes,
    *,
    chunked: bool = False,
    extra: dict[str, str] | None = None,
) -> Answer:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        "Connection: close",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    return exchange(port, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def chunks(body: bytes, size: int = 16 * 1024) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    )
    return out + b"0\r\n\r\n"


def with_fragment(document: Any, fragment: str) -> bytes:
    """document serialised, its MARK string replaced by a raw JSON fragment (a lone surrogate
    escape, a number literal no JSON library would write)."""
    return json.dumps(document).replace(json.dumps(MARK), fragment).encode("ascii")


def single(**extra: Any) -> dict[str, Any]:
    return {"inputs": dict(WEANING_INPUTS), **extra}


def batch(**extra: Any) -> dict[str, Any]:
    return {"patients": [single(), single(**extra)]}


def oip(vis_0h: Any = 40, shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    def tensor(name: str, value: Any, datatype: str = "FP64", **params: Any) -> dict[str, Any]:
        t: dict[str, Any] = {"name": name, "shape": [1], "datatype": datatype, "data": [value]}
        if params:
            t["parameters"] = params
        return t

    vis = tensor("vis_0h", vis_0h)
    if shape is not None:
        vis["shape"] = shape
        vis["data"] = vis_0h
    return {
        "inputs": [
            tensor("apache_ii", 22, "INT64"),
            vis,
            tensor("vis_24h", 12),
            tensor("lactate_24h", 2.8, unit="mmol/L"),
        ],
        **extra,
    }


def cds(**context: Any) -> dict[str, Any]:
    body = cds_request(weaning_prefetch())
    body["context"].update(context)
    return body


def cds_value(value: Any) -> dict[str, Any]:
    body = cds_request(weaning_prefetch())
    body["prefetch"]["apache"]["entry"][0]["resource"]["valueQuantity"]["value"] = value
    return body


APACHE_VALUE = "prefetch.apache.entry.0.resource.valueQuantity.value"
# (endpoint, document with MARK where the value goes, the path the error must name)
TEXT_FIELDS = [
    pytest.param(V1, single(patient_reference=MARK), "patient_reference", id="v1"),
    pytest.param(BATCH, batch(patient_reference=MARK), "patients.1.patient_reference", id="batch"),
    pytest.param(OIP, oip(id=MARK), "id", id="oip-id"),
    pytest.param(CDS, cds(patientId=MARK), "context.patientId", id="cds"),
]
NUMBER_FIELDS = [
    pytest.param(V1, single(correlation_id="c", inputs={**WEANING_INPUTS, "vis_0h": MARK}),
                 "inputs.vis_0h", id="v1"),
    pytest.param(BATCH, {"patients": [single(), {"inputs": {**WEANING_INPUTS, "vis_0h": MARK}}]},
                 "patients.1.inputs.vis_0h", id="batch"),
    pytest.param(OIP, oip(vis_0h=MARK), "inputs.1.data.0", id="oip"),
    pytest.param(CDS, cds_value(MARK), APACHE_VALUE, id="cds"),
]  # fmt: skip
ENDPOINTS = [V1, BATCH, OIP, CDS]
VALID = {V1: single(), BATCH: batch(), OIP: oip(), CDS: cds()}


def assert_problem(
    answer: Answer, status: int, *, path: str = "", errors: bool = True
) -> dict[str, Any]:
    """The service's problem+json: the status in the status line and the body, the request id in
    the body and the X-Request-ID header, field errors naming the rule (unless errors=False: the
    app's own 404/405 list none), and on the Open Inference Protocol its `error` member."""
    assert answer.status == status, answer.body[:500]
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.body[:500]
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["request_id"] and answer.headers["x-request-id"] == body["request_id"]
    assert isinstance(body["errors"], list)
    if errors:
        assert body["errors"] and all({"path", "message", "rule"} <= set(e) for e in body["errors"])
    if path.startswith("/v2/"):
        assert body["error"] == body["detail"]
    return body


@pytest.mark.parametrize("fragment", ['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"'])
@pytest.mark.parametrize(("path", "document", "field"), TEXT_FIELDS)
def test_a_lone_surrogate_in_any_text_field_is_422_naming_the_field(
    server: Server, path: str, document: Any, field: str, fragment: str
) -> None:
    answer = post(server.port, path, with_fragment(document, fragment))
    assert_problem(answer, 422, path=path)
    assert (field, "unicode") in answer.paths()


def test_a_surrogate_pair_is_a_character_and_is_echoed(server: Server) -> None:
    answer = post(
        server.port, V1, with_fragment(single(patient_reference=MARK), '"\\ud83d\\ude00"')
    )
    assert answer.status == 200
    assert answer.json()["patient_reference"] == "\U0001f600"


def test_a_lone_surrogate_in_an_object_key_is_422(server: Server) -> None:
    answer = post(server.port, V1, b'{"inputs": {}, "\\ud800x": 1}')
    assert_problem(answer, 422)
    assert ("\ufffdx", "unicode") in answer.paths()


@pytest.mark.parametrize("literal", ["1" + "0" * 400, "-1" + "0" * 400, "1e999", "-1E400"])
@pytest.mark.parametrize(("path", "document", "field"), NUMBER_FIELDS)
def test_a_number_beyond_float_range_is_422_naming_the_element(
    server: Server, path: str, document: Any, field: str, literal: str
) -> None:
    answer = post(server.port, path, with_fragment(document, literal))
    assert_problem(answer, 422, path=path)
    assert (field, "finite") in answer.paths()


@pytest.mark.parametrize("depth", [3, 4, 10, 500, 960])
def test_oip_data_nested_deeper_than_its_shape_is_422(server: Server, depth: int) -> None:
    nested = "[" * depth + "40" + "]" * depth  # as text: json.dumps would recurse too deep
    answer = post(server.port, OIP, with_fragment(oip(vis_0h=MARK, shape=[1, 1]), nested))
    assert_problem(answer, 422, path=OIP)
    assert answer.paths() == [("inputs.1.data.0", "shape")]


@pytest.mark.parametrize("data", [[[40]], [40]], ids=["nested-as-shape", "flat"])
def test_oip_data_nested_as_its_shape_or_flat_is_scored(server: Server, data: Any) -> None:
    answer = post(server.port, OIP, json.dumps(oip(vis_0h=data, shape=[1, 1])).encode())
    assert answer.status == 200, answer.body[:500]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_chunked_body_within_the_limit_is_read(server: Server, path: str) -> None:
    answer = post(server.port, path, chunks(json.dumps(VALID[path]).encode(), 7), chunked=True)
    assert answer.status == 200, answer.body[:500]


@pytest.mark.parametrize("size", ["zz", "-1", "1x", ""])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_malformed_chunk_size_is_400(server: Server, path: str, size: str) -> None:
    body = size.encode() + b"\r\n" + json.dumps(VALID[path]).encode() + b"\r\n0\r\n\r\n"
    answer = post(server.port, path, body, chunked=True)
    problem = assert_problem(answer, 400, path=path)
    assert problem["errors"][0]["rule"] == "transfer_encoding"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_chunked_body_over_the_limit_is_413_as_for_a_declared_length(
    server: Server, path: str
) -> None:
    body = b'{"inputs": "' + b"a" * (2 * MAX_BODY) + b'"}'
    chunked = post(server.port, path, chunks(body), chunked=True)
    declared = post(server.port, path, body)
    for answer in (chunked, declared):
        problem = assert_problem(answer, 413, path=path)
        assert problem["errors"][0]["rule"] == "max_bytes"


def test_a_chunked_body_of_8_mb_is_413(server: Server) -> None:
    body = b'{"inputs": "' + b"a" * (8 * 1024 * 1024) + b'"}'
    assert_problem(post(server.port, V1, chunks(body, 1024 * 1024), chunked=True), 413)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "x-unknown", "gzip, identity"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_content_coding_the_service_does_not_decode_is_415(
    server: Server, path: str, coding: str
) -> None:
    body = json.dumps(VALID[path]).encode()
    answer = post(server.port, path, body, extra={"Content-Encoding": coding})
    problem = assert_problem(answer, 415, path=path)
    assert problem["errors"][0]["rule"] == "content_encoding"
    assert answer.headers["accept-encoding"] == "identity"


def test_identity_content_coding_is_accepted(server: Server) -> None:
    body = json.dumps(single()).encode()
    assert post(server.port, V1, body, extra={"Content-Encoding": "identity"}).status == 200


def test_headers_too_large_is_431_in_the_problem_shape(server: Server) -> None:
    headers = f"X-Filler: {'a' * 10_000}\r\n"  # over gunicorn's limit_request_field_size
    answer = exchange(
        server.port, f"GET /health/live HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    )
    assert_problem(answer, 431)  # its rule is the answering layer's (tests/test_http_errors.py)


def test_too_many_headers_is_431_in_the_problem_shape(server: Server) -> None:
    headers = "".join(f"X-H{i}: a\r\n" for i in range(200))
    answer = exchange(
        server.port, f"GET /health/live HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    )
    assert_problem(answer, 431)


def test_uri_too_long_is_414_in_the_problem_shape(server: Server) -> None:
    answer = exchange(
        server.port, f"GET /v1/models?{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert_problem(answer, 414)


def test_a_malformed_request_line_is_400_in_the_problem_shape(server: Server) -> None:
    assert_problem(exchange(server.port, b"GET\x00 / HTTP/1.1\r\nHost: x\r\n\r\n"), 400)


# --- everything the HTTP layer answers by itself (gunicorn alone, or nginx in front) -----------

# (raw request, status, rule of the first error). The same answer through both entry points.
HTTP_LAYER = [
    pytest.param(b"NOT HTTP\r\n\r\n", 400, "http", id="not-http"),
    pytest.param(b"GET\x00 / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "http", id="nul-in-line"),
    pytest.param(b"GET /health/ready HTTP/2.0\r\nHost: x\r\n\r\n", 400, "http", id="http-2.0"),
    pytest.param(
        b"POST " + V1.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        400, "http", id="content-length-not-a-number",
    ),
    pytest.param(
        f"GET /health/ready HTTP/1.1\r\nHost: x\r\nX-Filler: {'a' * 10_000}\r\n\r\n".encode(),
        431, "http", id="header-line-too-large",
    ),
    pytest.param(
        ("GET /health/ready HTTP/1.1\r\nHost: x\r\n"
         + "".join(f"X-H{i}: a\r\n" for i in range(200)) + "\r\n").encode(),
        431, "http", id="too-many-header-fields",
    ),
    pytest.param(
        f"GET /v1/models?{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        414, "http", id="request-line-too-long",
    ),
    pytest.param(
        b"POST " + V1.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}",
        400, "http", id="transfer-coding-not-chunked",
    ),
    pytest.param(
        b"GET /_ecmo_error/400 HTTP/1.1\r\nHost: x\r\n\r\n", 404, None, id="an-error-page-url",
    ),
    pytest.param(b"TRACE " + V1.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", 405, None, id="trace"),
]  # fmt: skip


@pytest.mark.parametrize(("request_bytes", "status", "rule"), HTTP_LAYER)
def test_the_http_layer_answers_in_the_problem_shape(
    server: Server, request_bytes: bytes, status: int, rule: str | None
) -> None:
    problem = assert_problem(exchange(server.port, request_bytes), status, errors=rule is not None)
    if rule is not None:
        assert problem["errors"][0]["rule"] == rule


@pytest.mark.parametrize("path", ENDPOINTS)
def test_content_length_with_chunked_framing_is_400(server: Server, path: str) -> None:
    body = chunks(json.dumps(VALID[path]).encode())
    answer = post(server.port, path, body, chunked=True, extra={"Content-Length": "5"})
    assert_problem(answer, 400)  # the HTTP layer's: no protocol's own members


def test_the_callers_request_id_is_kept_on_an_answer_before_the_app(server: Server) -> None:
    body = b'{"inputs": "' + b"a" * (2 * MAX_BODY) + b'"}'
    answer = post(server.port, OIP, body, extra={"X-Request-ID": "probe-1"})
    assert assert_problem(answer, 413, path=OIP)["request_id"] == "probe-1"


def test_a_request_whose_headers_stall_is_closed_without_an_html_answer(server: Server) -> None:
    if server.nginx() is None:
        pytest.skip("gunicorn alone holds a worker for a stalled client: the reason for nginx")
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT + 10) as s:
        s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n")
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    if received:  # nginx closes on a read timeout; should it ever answer 408, in our shape
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"application/problem+json" in head
        assert json.loads(body)["status"] == 408


def test_a_body_that_stalls_is_closed_without_an_html_answer(server: Server) -> None:
    if server.nginx() is None:
        pytest.skip("gunicorn alone holds a worker for a stalled client: the reason for nginx")
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT + 10) as s:
        s.sendall(
            f"POST {V1} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    if received:
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"application/problem+json" in head
        assert json.loads(body)["status"] == 408
