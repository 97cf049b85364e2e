"""bench.instructions' arithmetic and its reading of valgrind's report."""

from __future__ import annotations

import pytest

from bench.instructions import collected, per_request


def test_the_count_is_read_from_callgrinds_summary() -> None:
    report = "==41== Events    : Ir\n==41== Collected : 6900598157\n==41==\n==41== I   refs: 6,9"
    assert collected(report) == 6_900_598_157
    with pytest.raises(RuntimeError, match="no instruction count"):
        collected("==41== ERROR SUMMARY: 0 errors")


def test_start_up_cancels_out_of_the_difference() -> None:
    start_up, each = 5_000_000_000, 722_000
    small, large = start_up + 100 * each, start_up + 400 * each
    assert per_request(small, large, 100, 400) == each
    with pytest.raises(ValueError):
        per_request(large, small, 400, 100)
