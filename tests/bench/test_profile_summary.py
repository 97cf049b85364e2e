"""bench.profile's reading of py-spy's raw (collapsed) stacks."""

from __future__ import annotations

from pathlib import Path

from bench.profile import summarise


def test_a_frame_name_with_a_newline_is_one_record(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "process 1:x;main (a.py:1);handle (b.py:2) 30\n"
        "process 1:x;main (a.py:1);repr (<Proxy (Working outside\n"
        "of application context.>:3) 10\n"
    )
    report = summarise(stacks, top=5)
    assert report.startswith("40 samples in the workers")
    assert "75.0 %  handle (b.py:2)" in report
    assert "25.0 %  repr (<Proxy (Working outsideof application context.>:3)" in report
    assert "100.0 %  main (a.py:1)" in report
