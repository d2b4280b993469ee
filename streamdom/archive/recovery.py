"""Start-up, before anything is live: replay what the write-ahead log still holds into the archive."""

from __future__ import annotations

import logging
from pathlib import Path

from streamdom.archive import commits
from streamdom.archive.lake import Location
from streamdom.archive.worker import FlusherProcess

log = logging.getLogger(__name__)


async def recover(loc: Location, data_dir: Path, process: FlusherProcess) -> tuple[int, int, bool]:
    """Delete what an interrupted commit left, commit every event still in the WAL once, then
    delete its segments.

    Events the archive already holds (a crash between a flush's commit and its segments'
    deletion) are skipped by their (session, stream, seq) inside the commit. A commit is
    atomic, so an interrupted one left nothing behind. Returns (events replayed, the archive's
    version, whether it holds any session). Runs in the flusher process, the archive's one writer.
    """
    wal_dir = data_dir / "wal"
    wal_dir.mkdir(parents=True, exist_ok=True)
    segments = sorted(wal_dir.glob("*.wal"))
    written, version, orphans, holds = await process.run(commits.replay, loc, segments)  # type: ignore[misc]
    for path in orphans:
        log.warning("removed %s, left by an interrupted write (its events are kept elsewhere)", path)
    for seg in segments:
        seg.unlink()
    return written, version, holds
