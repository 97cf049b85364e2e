"""The pod's process model through the image's exact CMD and ENV (issues 18.1, 19.3, 19.8).

gunicorn master (PID 1) -> nginx on ECMO_BIND (buffers every request) -> workers on a Unix socket;
the master's own listener answers /health/live and /metrics. Faults are injected from outside:
slow raw-socket clients, signals to workers, a 64 KB tmpfs as the metrics directory.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.slowclients import run as slow_clients
from tests.deploy.harness import host_env, parse_dockerfile, request
from tests.factories import WEANING_INPUTS
from tests.server import REPO, Server, free_port, running, unshare_works, wait_until

pytestmark = pytest.mark.slow

SPEC = parse_dockerfile()
PREDICT = "/v1/models/weaning/predict"
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """The image's CMD with the image's ENV on a free loopback port (models baked in)."""
    stack: list[Any] = []

    def start(wrap: list[str] | None = None, **env: str) -> Server:
        port = free_port()
        defaults = {
            "ECMO_BIND": f"127.0.0.1:{port}",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"prometheus-{port}"),
            "ECMO_WORKERS": "2",
        }
        full_env = host_env(SPEC.env, **(defaults | env))
        ctx = running((wrap or []) + SPEC.cmd, full_env, REPO, port, tmp_path / f"{port}.log")
        server = ctx.__enter__()
        stack.append(ctx)
        server.wait_workers(2, timeout=15)
        return server

    try:
        yield start
    finally:
        for ctx in reversed(stack):
            ctx.__exit__(None, None, None)


def _total(text: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def _predict(port: int, timeout: float = 5.0) -> int:
    return request(port, "POST", PREDICT, {"inputs": WEANING_INPUTS}, timeout)[0]


# --- 18.1 slow clients ------------------------------------------------------------------------


def test_eight_slow_clients_do_not_stall_predictions_or_liveness(
    serve: Callable[..., Server], report: Callable[[str], None]
) -> None:
    server = serve()
    # 8 raw-socket clients trickle headers (4) or bodies (4), one byte each 0.5 s, for 5 s.
    out = slow_clients(server.port, slow=8, normal=2, seconds=5.0, interval=0.5, timeout=2.0)
    report(
        f"[slow clients] normal {out.normal_ok}/{out.normal_sent} ok p50={out.normal_p50_ms} ms "
        f"p99={out.normal_p99_ms} ms max={out.normal_max_ms} ms; liveness "
        f"{out.live_probes - len(out.live_failures)}/{out.live_probes}; "
        f"slow bytes sent={out.slow_bytes_sent}"
    )
    assert out.slow_bytes_sent >= 8 * 6, "the slow clients did not get to send"
    assert out.normal_sent >= 50 and not out.normal_failures, out.normal_failures[:5]
    assert out.normal_p99_ms is not None and out.normal_p99_ms < 100
    assert out.live_probes >= 6 and not out.live_failures, out.live_failures


def test_liveness_is_answered_while_every_worker_is_stopped(serve: Callable[..., Server]) -> None:
    server = serve()
    workers = server.workers()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, body = request(server.port, "GET", "/health/live", timeout=2.0)
        assert status == 200 and body == {"status": "live"}
        assert time.monotonic() - started < 1.0
        with pytest.raises((TimeoutError, OSError)):
            _predict(server.port, timeout=1.0)  # the workers really cannot answer
        # Its client is gone when the worker resumes: gunicorn logs the answer it cannot write.
        server.abandoned_requests = 1
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    assert _predict(server.port) == 200


def test_nginx_answers_its_own_errors_in_the_problem_shape(serve: Callable[..., Server]) -> None:
    server = serve(ECMO_MAX_BODY_BYTES="2048")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(
        "POST",
        PREDICT,
        body=b"{" + b" " * 4096 + b"}",
        headers={"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body = response.read()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 413 and problem["code"] == "request_entity_too_large"
    assert problem["errors"] == [
        {
            "path": "",
            "message": "the body is larger than the service accepts",
            "rule": "max_bytes",
            "allowed": "at most 2048 bytes",
        }
    ]
    assert REQUEST_ID.match(problem["request_id"])
    conn.close()
    # A malformed request line: nginx's 400, same shape.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"NOT HTTP\r\n\r\n")
        raw = s.recv(65536)
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/problem+json" in head
    assert json.loads(payload)["code"] == "http_400"
    # nginx is the only bound on the request line: 5,000 bytes (over gunicorn's default 4,094)
    # reach the app; 9,000 get nginx's 414, in the same shape.
    assert request(server.port, "GET", "/health/ready?pad=" + "x" * 5000)[0] == 200
    status, problem = request(server.port, "GET", "/health/ready?pad=" + "x" * 9000)
    assert status == 414 and problem["code"] == "http_414", problem


def test_the_master_stops_when_nginx_dies(serve: Callable[..., Server]) -> None:
    server = serve()
    nginx = server.nginx()
    assert nginx is not None
    os.kill(nginx, signal.SIGKILL)
    server.proc.wait(timeout=20)  # then the container exits and the kubelet restarts it
    assert "nginx exited" in server.logs()


def test_proxy_off_is_gunicorn_alone(serve: Callable[..., Server]) -> None:
    server = serve(ECMO_PROXY="off")
    assert server.nginx() is None
    assert _predict(server.port) == 200


# --- 19.8 /metrics on a port of its own ---------------------------------------------------------


def test_metrics_on_their_own_port_and_not_on_the_main_one(serve: Callable[..., Server]) -> None:
    metrics_port = free_port()
    server = serve(ECMO_METRICS_BIND=f"127.0.0.1:{metrics_port}")
    for _ in range(7):
        assert _predict(server.port) == 200
    main = requests.get(f"{server.url}/metrics", timeout=5)
    assert main.status_code == 404
    assert main.headers["Content-Type"] == "application/problem+json"
    own = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert own.status_code == 200
    assert _total(own.text, "ecmo_predictions_total", model="weaning") == 7
    assert _total(own.text, "ecmo_http_requests_total", route="/v1/models/<name>/predict") == 7
    assert requests.get(f"http://127.0.0.1:{metrics_port}/health/live", timeout=5).json() == {
        "status": "live"
    }
    assert requests.get(f"http://127.0.0.1:{metrics_port}/v1/models", timeout=5).status_code == 404


# --- 19.3 a worker that cannot serve; a full metrics directory; recycling -----------------------


def test_liveness_fails_while_workers_keep_crashing_and_not_for_clean_restarts(
    serve: Callable[..., Server],
) -> None:
    server = serve()
    # Clean replacements (a reload replaces both workers) are not a sickness.
    for _ in range(2):
        before = server.workers()
        os.kill(server.pid, signal.SIGHUP)
        server.wait_workers(2, timeout=20, exclude=before)
    assert request(server.port, "GET", "/health/live")[0] == 200
    # Three workers die by a signal (as with SIGBUS on a full metrics tmpfs): the pod is not live.
    for _ in range(3):
        victim = min(server.workers())
        os.kill(victim, signal.SIGSEGV)
        server.wait_workers(2, timeout=20, exclude={victim})
    status, body = request(server.port, "GET", "/health/live")
    assert status == 503, body
    assert body["code"] == "not_live" and "3 workers died abnormally" in body["detail"]
    assert _predict(server.port) == 200  # readiness is not liveness: the new workers serve


def _in_tmpfs(directory: Path, size: str) -> list[str]:
    """argv prefix: run the command in a private mount namespace with a `size` tmpfs on
    `directory` (unprivileged: a user namespace maps us to root there; nothing leaks out)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    return ["unshare", "--mount", "--map-root-user", "sh", "-c", script, "sh", size, str(directory)]


@pytest.mark.skipif(not unshare_works(), reason="no mount namespaces here (unshare)")
def test_a_full_metrics_tmpfs_does_not_kill_predictions(
    serve: Callable[..., Server], tmp_path: Path, report: Callable[[str], None]
) -> None:
    # 12 KB, three pages: prometheus_client's files are sparse, so one worker's first three
    # metric files fit and the other worker's first write to its own file faults (SIGBUS before
    # the fix; with it every file's 64 KB is reserved up front, so all are ENOSPC, none a fault).
    directory = tmp_path / "tiny"
    server = serve(wrap=_in_tmpfs(directory, "12k"), PROMETHEUS_MULTIPROC_DIR=str(directory))
    workers = server.workers()
    statuses = [_predict(server.port) for _ in range(40)]
    live = [request(server.port, "GET", "/health/live")[0] for _ in range(3)]
    scrape = requests.get(f"{server.url}/metrics", timeout=5)
    logs = server.logs()
    report(
        f"[full metrics dir] predictions {statuses.count(200)}/40 ok; workers replaced: "
        f"{sorted(server.workers() - workers)}; SIGBUS in log: {'SIGBUS' in logs}"
    )
    assert statuses == [200] * 40
    assert server.workers() == workers and "SIGBUS" not in logs
    assert live == [200, 200, 200] and scrape.status_code == 200
    assert "metrics not recorded" in logs


def test_recycled_workers_keep_counters_exact_and_the_directory_bounded(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    directory = tmp_path / "recycle-prom"
    server = serve(
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        ECMO_MAX_REQUESTS="20",
        ECMO_MAX_REQUESTS_JITTER="5",
    )
    n = 150
    for _ in range(n):
        assert _predict(server.port) == 200
    wait_until(lambda: len(server.workers()) == 2, 15, "two workers")
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert _total(text, "ecmo_predictions_total", model="weaning") == n
    assert _total(text, "ecmo_http_requests_total", route="/v1/models/<name>/predict") == n
    # 150 requests at most 25 per worker: at least 5 clean recycles, none abnormal.
    assert _total(text, "ecmo_worker_exits_total", kind="clean") >= 5
    assert _total(text, "ecmo_worker_exits_total", kind="abnormal") == 0
    files = sorted(p.name for p in directory.glob("*.db"))
    # Live workers' files (one per metric type and gauge mode: counter, histogram, livemax,
    # livemin, ...), plus one merged file per type: none of a recycled worker is left.
    live = {str(pid) for pid in server.workers()}
    per_worker = [name for name in files if not name.endswith("_merged.db")]
    assert {name.rsplit("_", 1)[1].removesuffix(".db") for name in per_worker} <= live, files
    assert {"counter_merged.db", "histogram_merged.db"} <= set(files)
