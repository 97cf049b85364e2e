"""scripts/loadtest.py against a tiny local server: its printed counts add up and match the server's."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "loadtest.py"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the script expects
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        with self.lock:
            n = sum(self.seen.values()) + 1
            status = 503 if n % 4 == 0 else 200  # every 4th request fails
            self.seen[status] += 1
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Counter[int]]]:
    _Handler.seen = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/predict", _Handler.seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _field(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.M)
    assert match is not None, f"{pattern!r} not in output:\n{text}"
    return match[1]


def _run(url: str, body: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            url,
            "-X",
            "POST",
            "--body-file",
            str(body),
            "-H",
            "Content-Type: application/json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_closed_loop_counts_add_up_and_match_the_server(server, tmp_path):
    url, seen = server
    body = tmp_path / "body.json"
    body.write_text('{"inputs": {}}')
    done = _run(url, body, "-c", "4", "-d", "1")
    out = done.stdout
    total = int(_field(r"^requests:\s+(\d+) in [0-9.]+ s = [0-9.]+ req/s", out))
    statuses = {
        int(k): int(v) for k, v in re.findall(r"(\d{3}): (\d+)", _field(r"^statuses:(.*)$", out))
    }
    non2xx = int(_field(r"^non-2xx:\s+(\d+)", out))
    assert total > 20
    assert sum(statuses.values()) == total  # no transport errors against a healthy server
    assert statuses == dict(seen)  # the client saw exactly what the server sent
    assert non2xx == statuses.get(503, 0) == total // 4
    assert done.returncode == 1  # 503s make the run fail for scripts


def test_open_loop_holds_the_rate_and_reports_json(server, tmp_path):
    url, seen = server
    body = tmp_path / "body.json"
    body.write_text("{}")
    done = _run(url, body, "--rate", "100", "-d", "1", "--json")
    result = json.loads(done.stdout)
    assert result["mode"] == "open"
    assert 80 <= result["requests"] <= 101  # 100/s for 1 s, scheduled, never more
    assert sum(result["statuses"].values()) + sum(result["errors"].values()) == result["requests"]
    assert result["statuses"] == {str(k): v for k, v in sorted(seen.items())}
    lat = result["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_refuses_a_non_loopback_host_without_allow_remote(tmp_path):
    body = tmp_path / "b.json"
    body.write_text("{}")
    done = _run("http://example.invalid/predict", body, "-d", "1")
    assert done.returncode != 0
    assert "not a loopback address" in done.stderr


def test_a_run_shorter_than_its_start_delay_has_a_positive_duration(server):
    # One GET (no body: no delayed-ACK pause) ends well within the 50 ms the threads are given
    # to start: the duration is measured from the common start to the last answer.
    url, _ = server
    done = subprocess.run(
        [sys.executable, str(SCRIPT), url, "-c", "1", "-n", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    result = json.loads(done.stdout)
    assert result["requests"] == 1
    assert result["duration_s"] >= 0
    assert result["rps"] > 0


def test_long_runs_show_progress_on_stderr(server, tmp_path):
    url, _ = server
    body = tmp_path / "body.json"
    body.write_text("{}")
    done = _run(url, body, "-c", "2", "-d", "1.5", "--progress", "0.4", "--json")
    lines = [line for line in done.stderr.splitlines() if line.startswith("progress:")]
    assert lines, done.stderr
    for line in lines:
        assert re.fullmatch(
            r"progress:\s+[0-9.]+/2 s  \d+ requests  \d+ req/s  errors \d+", line
        ), line
    assert json.loads(done.stdout)["requests"] > 0  # stdout stays pure JSON


def _loadtest_module():
    spec = importlib.util.spec_from_file_location("loadtest", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["loadtest"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_says_when_the_client_is_the_bottleneck(server, tmp_path):
    loadtest = _loadtest_module()
    assert loadtest.client_bound(loadtest.CLIENT_BOUND_PCT)
    assert not loadtest.client_bound(loadtest.CLIENT_BOUND_PCT - 1)
    url, _ = server
    body = tmp_path / "body.json"
    body.write_text("{}")
    result = json.loads(_run(url, body, "-c", "1", "-n", "5", "--json").stdout)
    assert result["client_bound"] == loadtest.client_bound(result["client_cpu_pct_of_one_core"])
    for cpu, bound in ((95.0, True), (20.0, False)):
        text = loadtest.render({**result, "client_cpu_pct_of_one_core": cpu, "client_bound": bound})
        assert ("the client was the bottleneck" in text) is bound
        assert f"client CPU: {cpu} % of one core" in text
