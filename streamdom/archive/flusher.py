"""Where an event is flushed: the log's tail moves from the write-ahead log into the archive.

Every `--flush-interval` (or sooner, once `flush_max_events` are waiting): close the WAL's
current segment, commit the closed segments' rows to the archive in the flusher process
(`commits.flush_segments`: one DuckLake commit), point readers at the new snapshot and drop the
same rows from the tail in one IOLoop step (so a reader finds every event in exactly one of
them), then delete the segments. If anything fails, the rows stay in the tail and the WAL and
the next flush writes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import duckdb

from streamdom.archive import commits
from streamdom.archive.commits import StreamInfo
from streamdom.archive.lake import Location
from streamdom.archive.reads import ArchiveReader
from streamdom.archive.tail import LogTail
from streamdom.archive.wal import GroupCommit
from streamdom.archive.worker import FlusherProcess
from streamdom.config import Config

log = logging.getLogger(__name__)

class Flusher:
    """Moves the tail of the log into the archive and points readers at it."""

    def __init__(self, config: Config, location: Location, wal: GroupCommit, tail: LogTail,
                 reader: ArchiveReader, process: FlusherProcess,
                 stream_info: Callable[[Iterable[str]], StreamInfo]) -> None:
        self.config = config
        self.location = location
        self.wal = wal
        self.tail = tail
        self.reader = reader
        self.process = process
        self.stream_info = stream_info
        self._lock = asyncio.Lock()

    def flush_soon(self) -> None:
        """Start a flush unless one is running (the tail is getting long)."""
        if not self._lock.locked():
            asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Move every row now in the tail into the archive, then drop the WAL segments that held them."""
        async with self._lock:
            if not self.tail.count:
                return
            # Taken in the same step as the WAL rotation below is queued: the closed segments
            # hold exactly these rows (and any left by an earlier failed flush, also here).
            mark = self.tail.mark()
            count = sum(mark.values())
            info = self.stream_info(mark)
            signals = self.tail.signals(mark)
            segments = await self.wal.sync(rotate=True)
            if segments is None:
                return  # the WAL is failing; everything stays in the tail and the log
            started = time.monotonic()
            try:
                written, version, added = await self.process.run(  # type: ignore[misc]
                    commits.flush_segments, self.location, segments, info, signals)
            except (OSError, duckdb.Error) as exc:
                log.error("archive flush failed (events stay in memory and the WAL): %s", exc)
                return
            took = time.monotonic() - started
            if took > max(30.0, 6 * self.config.flush_interval):
                log.warning("a flush of %d events took %.0f s: if the CPUs are always busy, "
                            "consider --flusher-priority low", count, took)
            if written != count:  # would mean a bug: say so, the WAL was the truth either way
                log.error("flush wrote %d events from the WAL, %d were pending", written, count)
            # On the IOLoop, in one step: readers now find these events in the archive, not the tail.
            self.reader.advance(version, added)
            self.tail.drop(mark)
            await self.wal.delete(segments)
