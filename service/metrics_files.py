"""The Prometheus multiprocess directory: files that cannot SIGBUS, dead workers merged, scrapes locked.

Issue 19.3. prometheus_client (multiprocess mode) keeps each process's values in mmapped files
(`<type>_<pid>.db`), created sparse with ftruncate. On a full tmpfs the first write to a page that
has no memory behind it is not an error but SIGBUS: the worker dies mid-request and the caller gets
no answer. And a dead worker's counter and histogram files stay forever (mark_process_dead removes
only live-gauge files), so with worker recycling the directory and every scrape grow without bound.

- ReservingMmapedDict reserves a file's blocks with posix_fallocate before it maps or grows them:
  a full directory is then an OSError (ENOSPC) at the metric update, which telemetry.Metrics
  catches, so the prediction is still answered (its metrics are lost and logged).
- merge_dead_worker() folds a dead worker's counters and histograms into `<type>_merged.db` and
  deletes its files, so the directory holds the live workers' files plus one merged file per type,
  and counters stay exact across recycling.
- scrape_lock() keeps a scrape from reading the directory halfway through a merge (which would
  count the dead worker twice or not at all: a counter that goes down reads as a reset).

prometheus_client offers no hook for how its files are allocated, so install_reserving_files()
replaces the MmapedDict name its values module uses; if a future version moves it, the
replacement is skipped and logged (the service then behaves as prometheus_client does).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import mmap_dict, values

log = logging.getLogger("ecmo.metrics")

MERGED_TYPES = ("counter", "histogram", "summary")
LOCK_NAME = ".scrape.lock"


def _reserve(fd: int, size: int) -> None:
    """Give the first `size` bytes of the file real blocks (ENOSPC now, not SIGBUS later)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return  # a filesystem without fallocate: nothing better to do than prometheus_client
        raise


def _entry_size(key: str) -> int:
    """Bytes MmapedDict._init_value appends for `key` (length, padded key, value, timestamp)."""
    encoded = len(key.encode("utf-8"))
    return 4 + encoded + (8 - (encoded + 4) % 8) + 16


class ReservingMmapedDict(mmap_dict.MmapedDict):
    """prometheus_client's MmapedDict, with every mapped byte reserved on disk first."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            fd = os.open(filename, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    _reserve(fd, max(size, mmap_dict._INITIAL_MMAP_SIZE))
                except OSError:
                    if size == 0:  # ours and empty: an empty .db file breaks every scrape
                        os.unlink(filename)
                    raise
            finally:
                os.close(fd)
        super().__init__(filename, read_mode)  # type: ignore[no-untyped-call]

    def _init_value(self, key: str) -> None:
        needed = self._used + _entry_size(key)
        capacity = self._capacity
        while needed > capacity:
            capacity *= 2
        if capacity != self._capacity:
            _reserve(self._f.fileno(), capacity)  # before MmapedDict truncates and remaps
        super()._init_value(key)  # type: ignore[no-untyped-call]


def install_reserving_files() -> bool:
    """Make prometheus_client create its multiprocess files through ReservingMmapedDict."""
    if getattr(values, "MmapedDict", None) is mmap_dict.MmapedDict:
        setattr(values, "MmapedDict", ReservingMmapedDict)  # noqa: B010 (not a public name)
        return True
    if getattr(values, "MmapedDict", None) is ReservingMmapedDict:
        return True
    log.warning(
        "prometheus_client changed: metrics files are not reserved (a full disk may SIGBUS)"
    )
    return False


@contextlib.contextmanager
def scrape_lock(directory: Path, exclusive: bool = False) -> Iterator[None]:
    """A POSIX record lock on the directory's lock file (shared for scrapes, exclusive for
    merges). POSIX locks belong to the process and are not inherited by fork, so a worker forked
    while the master holds one does not hold it too. Within one process use a threading lock too."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield  # no lock file (directory gone or full of inodes): read without the lock
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value, _timestamp, _pos in mmap_dict.MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
        out[key] = out.get(key, 0.0) + value
    return out


def merge_dead_worker(directory: Path, pid: int) -> int:
    """Fold a dead worker's counter/histogram/summary files into `<type>_merged.db`; delete them.

    Returns how many files were merged. On any failure (e.g. ENOSPC for the new merged file) the
    dead worker's files stay as they are: its counts are still read, only not pruned."""
    merged = 0
    for typ in MERGED_TYPES:
        dead = directory / f"{typ}_{pid}.db"
        if not dead.exists():
            continue
        target = directory / f"{typ}_merged.db"
        tmp = directory / f".{typ}_merged.tmp"  # not *.db: scrapes never read it
        try:
            totals = _read(target) if target.exists() else {}
            for key, value in _read(dead).items():
                totals[key] = totals.get(key, 0.0) + value
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            out: Any = ReservingMmapedDict(str(tmp))
            try:
                for key in sorted(totals):
                    out.write_value(key, totals[key], 0.0)
            finally:
                out.close()
            with scrape_lock(directory, exclusive=True):
                os.replace(tmp, target)
                dead.unlink()
            merged += 1
        except (OSError, RuntimeError, ValueError) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning(
                "could not merge a dead worker's metrics file; it is kept",
                extra={"file": dead.name, "error": repr(exc)},
            )
    return merged


def directory_usage(directory: Path) -> tuple[int, int, int | None]:
    """(files, bytes allocated, bytes free on its filesystem or None)."""
    files = 0
    used = 0
    for entry in directory.glob("*.db"):
        with contextlib.suppress(OSError):
            used += entry.stat().st_blocks * 512
            files += 1
    free: int | None
    try:
        st = os.statvfs(directory)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    return files, used, free
