"""The set of Parquet files readers may use: swapped atomically, old files deleted once unread."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from streamdom.archive.layout import DataFile

log = logging.getLogger(__name__)


class Catalog:
    """Thread-safe list of complete data files with reader reference counts per generation.

    Writers (flush, compaction, retention) change the list in one step; a file they retire is
    unlinked only when no reader still holds a snapshot that lists it, so a query running
    during compaction sees either the old files or the new one, never both and never a gap.
    """

    def __init__(self, files: list[DataFile]) -> None:
        self._lock = threading.Lock()
        self._files: tuple[DataFile, ...] = tuple(files)
        self._gen = 0
        self._readers: dict[int, int] = {}
        self._retired: list[tuple[int, DataFile]] = []

    def files(self) -> tuple[DataFile, ...]:
        """The current files (no reader reference taken; for writers and listings)."""
        return self._files

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[DataFile, ...]]:
        """Hold the current file list for the duration of a read."""
        with self._lock:
            gen, files = self._gen, self._files
            self._readers[gen] = self._readers.get(gen, 0) + 1
        try:
            yield files
        finally:
            with self._lock:
                self._readers[gen] -= 1
                if not self._readers[gen]:
                    del self._readers[gen]
                doomed = self._collect()
            _unlink(doomed)

    def change(self, add: list[DataFile] = (), remove: list[DataFile] = ()) -> None:  # type: ignore[assignment]
        """Add and retire files in one atomic step."""
        with self._lock:
            gone = set(remove)
            self._files = tuple(f for f in self._files if f not in gone) + tuple(add)
            self._retired.extend((self._gen, f) for f in remove)
            self._gen += 1
            doomed = self._collect()
        _unlink(doomed)

    def _collect(self) -> list[DataFile]:
        # A file retired at generation g may go once no reader holds a snapshot of generation <= g.
        oldest = min(self._readers, default=self._gen)
        keep, doomed = [], []
        for g, f in self._retired:
            (doomed if oldest > g else keep).append((g, f))
        self._retired = keep
        return [f for _, f in doomed]


def _unlink(files: list[DataFile]) -> None:
    for f in files:
        for p in (f.index, f.events):  # index first: a pair never lingers without its index
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        for d in (f.index.parent, f.events.parent):
            _rmdir_if_empty(d)


def _rmdir_if_empty(d: Path) -> None:
    with contextlib.suppress(OSError):
        d.rmdir()
