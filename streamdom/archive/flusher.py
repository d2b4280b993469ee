"""Where an event is flushed: the log's tail moves from the write-ahead log into Parquet.

Every `--flush-interval` (or sooner, once `flush_max_events` are waiting): close the WAL's
current segment, write the closed segments' rows to Parquet in the flusher process
(`segments_to_parquet`, each event once), add the new files to the catalog and drop the same
rows from the tail in one IOLoop step (so a reader finds every event in exactly one of them),
then delete the segments. If anything fails, the rows stay in the tail and the WAL and the
next flush writes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from streamdom.archive import layout
from streamdom.archive.catalog import Catalog
from streamdom.archive.layout import DataFile
from streamdom.archive.tail import LogTail
from streamdom.archive.wal import GroupCommit, read_segments
from streamdom.archive.worker import FlusherProcess
from streamdom.config import Config
from streamdom.records import ROW_SEQ, ROW_SESSION, ROW_STREAM, Row, StreamKey

log = logging.getLogger(__name__)

StreamInfo = dict[StreamKey, tuple[str, str]]  # (url, user agent) per stream, for the index


class Flusher:
    """Moves the tail of the log into Parquet files the catalog lists."""

    def __init__(self, config: Config, wal: GroupCommit, tail: LogTail, catalog: Catalog,
                 process: FlusherProcess, stream_info: Callable[[Iterable[str]], StreamInfo]) -> None:
        self.config = config
        self.wal = wal
        self.tail = tail
        self.catalog = catalog
        self.process = process
        self.stream_info = stream_info
        self._lock = asyncio.Lock()

    def flush_soon(self) -> None:
        """Start a flush unless one is running (the tail is getting long)."""
        if not self._lock.locked():
            asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Move every row now in the tail into Parquet, then drop the WAL segments that held them."""
        async with self._lock:
            if not self.tail.count:
                return
            # Taken in the same step as the WAL rotation below is queued: the closed segments
            # hold exactly these rows (and any left by an earlier failed flush, also here).
            mark = self.tail.mark()
            count = sum(mark.values())
            info = self.stream_info(mark)
            segments = await self.wal.sync(rotate=True)
            if segments is None:
                return  # the WAL is failing; everything stays in the tail and the log
            started = time.monotonic()
            try:
                files, written = await self.process.run(  # type: ignore[misc]
                    segments_to_parquet, self.config.data_dir, segments, info,
                    self.config.parquet_compression_level)
            except OSError as exc:
                log.error("Parquet flush failed (events stay in memory and the WAL): %s", exc)
                return
            took = time.monotonic() - started
            if took > max(30.0, 6 * self.config.flush_interval):
                log.warning("a flush of %d events took %.0f s: if the CPUs are always busy, "
                            "consider --flusher-priority low", count, took)
            if written != count:  # would mean a bug: say so, the WAL was the truth either way
                log.error("flush wrote %d events from the WAL, %d were pending", written, count)
            # On the IOLoop, in one step: readers now find these events in Parquet, not the tail.
            self.catalog.change(add=files)
            self.tail.drop(mark)
            await self.wal.delete(segments)


# --- jobs, run in the flusher process (and by recovery, in-process) ---------------------------
def segments_to_parquet(data_dir: Path, segments: list[Path], stream_info: StreamInfo,
                        level: int) -> tuple[list[DataFile], int]:
    """Write the records of WAL segments to Parquet, each (session, stream, seq) once.

    Returns the files written and how many records they hold.
    """
    rows = unique_rows(read_segments(segments), {})
    return write_rows(data_dir, rows, stream_info, level), len(rows)


def unique_rows(rows: list[Row], high: dict[StreamKey, int]) -> list[Row]:
    """WAL rows, each (session, stream, seq) once and none at or below `high` for its stream."""
    seen: set[tuple[str, str, int]] = set()
    out = []
    for row in rows:
        key = (row[ROW_SESSION], row[ROW_STREAM], row[ROW_SEQ])
        if row[ROW_SEQ] <= high.get(key[:2], 0) or key in seen:
            continue  # archived before a crash, or logged twice
        seen.add(key)
        out.append(row)
    return out


def write_rows(data_dir: Path, rows: list[Row], stream_info: StreamInfo, level: int) -> list[DataFile]:
    """Write record rows as one events + index pair per UTC day; on failure none of them stays."""
    out: list[DataFile] = []
    try:
        for day, day_rows in layout.split_by_day(rows).items():
            events = layout.records_table(day_rows)
            index = layout.index_table(events, stream_info)
            out.append(layout.write_pair(data_dir, day, events, index, level))
    except BaseException:
        # A retry writes every record again: a pair left from this attempt would duplicate it.
        for f in out:
            f.index.unlink(missing_ok=True)
            f.events.unlink(missing_ok=True)
        raise
    return out
