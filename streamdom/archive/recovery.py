"""Start-up, before anything is live: clean up interrupted writes and replay the WAL into Parquet."""

from __future__ import annotations

import logging
from pathlib import Path

from streamdom.archive import flusher, layout, queries
from streamdom.archive.layout import DataFile
from streamdom.archive.wal import read_segments
from streamdom.records import ROW_SESSION, ROW_STREAM

log = logging.getLogger(__name__)


def recover(data_dir: Path, level: int) -> tuple[list[DataFile], int]:
    """Make the data dir consistent; return every complete file pair and how many events were replayed.

    What an interrupted write left (temp files, events files without their index) goes first,
    so no one globbing the directory sees an event twice. Then every event still in the WAL is
    written to Parquet once: events the archive already holds (a crash between a flush and its
    segments' deletion) are skipped by their (session, stream, seq). Then the segments go.
    Blocking: call from a thread.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    for p in layout.remove_leftovers(data_dir):
        log.warning("removed %s, left by an interrupted write (its events are kept elsewhere)", p)
    files = layout.scan(data_dir)
    wal_dir = data_dir / "wal"
    wal_dir.mkdir(exist_ok=True)
    segments = sorted(wal_dir.glob("*.wal"))
    rows = read_segments(segments)
    written = 0
    if rows:
        high = queries.stream_high_seqs(files, sorted({(r[ROW_SESSION], r[ROW_STREAM]) for r in rows}))
        unique = flusher.unique_rows(rows, high)
        files += flusher.write_rows(data_dir, unique, {}, level)
        written = len(unique)
    for seg in segments:
        seg.unlink()
    return files, written
