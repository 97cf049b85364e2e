"""The master's side of the process model, without gunicorn: worker-exit accounting, the clean-exit
pipe, the listener's answers, and dead workers' metrics files merged (service/ops.py,
service/metrics_files.py). The same behaviour through real gunicorn: tests/deploy/test_process_model.py."""

from __future__ import annotations

import errno
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from service.metrics_files import (
    ReservingMmapedDict,
    directory_usage,
    merge_dead_worker,
    scrape_lock,
)
from service.ops import ExitPipe, Ops, WorkerWatch


def test_liveness_fails_at_three_abnormal_exits_in_the_window_and_recovers() -> None:
    watch = WorkerWatch(window=60.0, limit=3)
    for t in (0.0, 1.0):
        watch.worker_exited(clean=False, now=t)
    for t in (2.0, 3.0, 4.0, 5.0):
        watch.worker_exited(clean=True, now=t)  # recycling and reloads never count
    assert watch.verdict(now=5.0) == (True, 2)
    watch.worker_exited(clean=False, now=10.0)
    assert watch.verdict(now=10.0) == (False, 3)
    assert watch.verdict(now=60.5) == (True, 2)  # the first crash left the window
    assert watch.verdict(now=200.0) == (True, 0)
    assert (watch.exits, watch.abnormal) == (7, 3)


def test_the_exit_pipe_tells_clean_exits_from_deaths() -> None:
    pipe = ExitPipe()
    pid = os.fork()
    if pid == 0:  # a "worker" that exits through Python
        pipe.report_clean_exit(os.getpid())
        os._exit(0)
    os.waitpid(pid, 0)
    assert pipe.was_clean(pid) is True
    assert pipe.was_clean(pid) is False  # each report is used once
    assert pipe.was_clean(424242) is False  # killed: it never wrote


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[tuple[Ops, str]]:
    directory = tmp_path / "prom"
    directory.mkdir()
    o = Ops.create(directory)
    host, port = o.serve("127.0.0.1", 0)
    try:
        yield o, f"http://{host}:{port}"
    finally:
        o.close()


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_the_listener_answers_liveness_metrics_and_404(ops: tuple[Ops, str]) -> None:
    o, url = ops
    assert _get(url + "/health/live") == (200, "application/json", '{"status": "live"}')
    for _ in range(3):
        o.worker_exited(os.getpid() + 1_000_000, aborted=False)  # never reported clean
    status, ctype, body = _get(url + "/health/live")
    problem = json.loads(body)
    assert (status, ctype, problem["code"]) == (503, "application/problem+json", "not_live")
    assert "3 workers died abnormally" in problem["detail"] and problem["request_id"]
    status, _, text = _get(url + "/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert status == 200
    assert samples[("ecmo_worker_exits_total", (("kind", "abnormal"),))] == 3
    assert samples[("ecmo_metrics_dir_files", ())] == 0
    status, ctype, body = _get(url + "/v1/models")
    assert (status, ctype, json.loads(body)["code"]) == (
        404,
        "application/problem+json",
        "not_found",
    )


def _write(path: Path, values: dict[str, float]) -> None:
    d = MmapedDict(str(path))
    for key, value in values.items():
        d.write_value(key, value, 0.0)
    d.close()


def _read(path: Path) -> dict[str, float]:
    return {k: v for k, v, _, _ in MmapedDict.read_all_values_from_file(str(path))}


def test_a_dead_workers_counters_and_histograms_are_merged_and_its_files_removed(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "counter_11.db", {"a": 2.0, "b": 1.0})
    _write(tmp_path / "counter_22.db", {"a": 5.0})
    _write(tmp_path / "histogram_11.db", {"h_bucket": 3.0, "h_sum": 0.25})
    _write(tmp_path / "gauge_livemax_22.db", {"g": 1.0})
    assert merge_dead_worker(tmp_path, 11) == 2
    _write(tmp_path / "counter_33.db", {"a": 1.0, "c": 4.0})
    assert merge_dead_worker(tmp_path, 33) == 1
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_22.db",
        "counter_merged.db",
        "gauge_livemax_22.db",
        "histogram_merged.db",
    ]
    assert _read(tmp_path / "counter_merged.db") == {"a": 3.0, "b": 1.0, "c": 4.0}
    assert _read(tmp_path / "histogram_merged.db") == {"h_bucket": 3.0, "h_sum": 0.25}
    assert not list(tmp_path.glob(".*tmp"))
    files, used, free = directory_usage(tmp_path)
    assert files == 4 and used > 0 and free is not None and free > 0


def test_a_merge_that_cannot_write_keeps_the_dead_workers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "counter_11.db", {"a": 2.0})

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("service.metrics_files.os.posix_fallocate", full)
    assert merge_dead_worker(tmp_path, 11) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_11.db"]  # counts kept, no debris


def test_a_file_that_cannot_be_reserved_is_an_error_not_an_empty_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("service.metrics_files.os.posix_fallocate", full)
    with pytest.raises(OSError, match="No space"):
        ReservingMmapedDict(str(tmp_path / "counter_1.db"))
    assert list(tmp_path.iterdir()) == []  # an empty .db file would break every scrape


def test_reserved_files_grow_with_their_keys(tmp_path: Path) -> None:
    d = ReservingMmapedDict(str(tmp_path / "counter_1.db"))
    for i in range(2000):  # well past the first 64 KB
        d.write_value(f"key-{i:05d}-" + "x" * 40, float(i), 0.0)
    d.close()
    path = tmp_path / "counter_1.db"
    assert path.stat().st_blocks * 512 >= path.stat().st_size  # every mapped byte has blocks
    assert _read(path)["key-01999-" + "x" * 40] == 1999.0


def test_the_scrape_lock_is_taken_and_released(tmp_path: Path) -> None:
    with scrape_lock(tmp_path, exclusive=True):
        pass
    with scrape_lock(tmp_path):
        pass
    with scrape_lock(tmp_path / "missing"):  # no directory: read without the lock
        pass


def test_other_methods_get_405_with_allow_in_the_problem_shape(ops: tuple[Ops, str]) -> None:
    _, url = ops
    for method in ("POST", "QUERY", "DELETE"):
        request = urllib.request.Request(url + "/health/live", method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 405 and caught.value.headers["Allow"] == "GET, HEAD, OPTIONS"
        assert json.loads(caught.value.read())["code"] == "method_not_allowed"
    head = urllib.request.Request(url + "/health/live", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as r:
        assert r.status == 200 and r.read() == b"" and r.headers["Server-Timing"].startswith("app;")
