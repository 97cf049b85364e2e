"""The gunicorn hooks that keep multiprocess metrics exact: a fresh directory at start, and a
dead worker's live gauges removed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

CONF = Path(__file__).resolve().parent.parent / "service" / "gunicorn_conf.py"


def load_conf(monkeypatch: pytest.MonkeyPatch, directory: Path) -> ModuleType:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    # The config sets ECMO_RUN_DIR when unset; keep that out of this process's environment.
    monkeypatch.setenv("ECMO_RUN_DIR", str(directory.parent / "run"))
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", CONF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_start_wipes_what_an_earlier_run_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "prom"
    (directory / "sub").mkdir(parents=True)
    (directory / "counter_4242.db").write_bytes(b"stale")
    (directory / "sub" / "x.db").write_bytes(b"stale")
    conf = load_conf(monkeypatch, directory)
    conf.on_starting(SimpleNamespace())
    assert directory.is_dir() and list(directory.iterdir()) == []


def test_a_dead_workers_live_gauges_are_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    for name in ("gauge_livemax_4242.db", "gauge_livemax_5151.db", "counter_4242.db"):
        (directory / name).write_bytes(b"")
    conf = load_conf(monkeypatch, directory)
    worker: Any = SimpleNamespace(pid=4242)
    conf.child_exit(None, worker)
    # Counters of the dead worker still count (their totals stay); its live gauges go.
    assert sorted(p.name for p in directory.iterdir()) == [
        "counter_4242.db",
        "gauge_livemax_5151.db",
    ]


def test_workers_collect_young_objects_less_often(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gc

    conf = load_conf(monkeypatch, tmp_path)
    before = gc.get_threshold()
    try:
        conf.post_fork(None, None)
        assert gc.get_threshold() == (conf.GC_GEN0_THRESHOLD, before[1], before[2])
    finally:
        gc.set_threshold(*before)
