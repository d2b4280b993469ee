"""Durable storage: WAL before acks, periodic Parquet flushes, DuckDB reads, all off the IOLoop."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tornado.ioloop import IOLoop, PeriodicCallback

from streamdom.archive import flusher, layout, maintenance, queries
from streamdom.archive.catalog import Catalog
from streamdom.archive.layout import DataFile
from streamdom.archive.wal import WriteAheadLog, read_segments
from streamdom.config import Config
from streamdom.records import (
    ROW_DATA,
    ROW_SEQ,
    ROW_SERVER_TIME,
    ROW_SESSION,
    ROW_STREAM,
    EventRecord,
    Row,
    row_event_json,
)
from streamdom.wire import now_ms

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
StreamKey = tuple[str, str]


@dataclass
class PendingStats:
    """Summary of one session's events not yet in Parquet, merged into listings."""

    started_at: int
    last_event_at: int
    event_count: int = 0
    bytes: int = 0
    records: list[Row] = field(default_factory=list)  # rows: invisible to the cyclic GC


class StorageUnavailable(Exception):
    """Storage cannot take events now (disk full or failing)."""


class Storage:
    """Owns the WAL, the not-yet-flushed events, the catalog of Parquet files and the executors."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.io = ThreadPoolExecutor(1, thread_name_prefix="streamdom-io")  # serial: WAL order
        self.readers = ThreadPoolExecutor(config.query_threads, thread_name_prefix="streamdom-query")
        self.flusher = flusher.make_pool(config.flusher_idle)  # Parquet + compaction, off our GIL
        self.catalog = Catalog([])
        self.wal: WriteAheadLog | None = None
        self.received: dict[StreamKey, int] = {}  # highest seq accepted (relayed)
        self.durable: dict[StreamKey, int] = {}  # highest seq in the fsynced WAL
        self.stream_info: dict[StreamKey, tuple[str, str]] = {}  # url, user agent from hello
        self.ack_listeners: dict[StreamKey, set[Callable[[int], None]]] = {}
        self._wal_pending: list[Row] = []
        self._unflushed: dict[str, PendingStats] = {}
        self._unflushed_count = 0
        self._wal_task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._periodic: list[PeriodicCallback] = []
        self.writable = True
        self.failure: str | None = None

    # --- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Recover the WAL into Parquet, load the catalog, start background work."""
        loop = asyncio.get_running_loop()
        self.flusher.submit(flusher.ready)  # start the worker now, not at the first flush
        files, recovered = await loop.run_in_executor(self.io, self._recover)
        self.catalog = Catalog(files)
        if recovered:
            log.info("recovered %d events from the write-ahead log", recovered)
        self._check_disk()
        for fn, seconds in ((self.flush, self.config.flush_interval), (self._check_disk, 1.0),
                            (self.maintain, self.config.compaction_interval)):
            pc = PeriodicCallback(fn, seconds * 1000)
            pc.start()
            self._periodic.append(pc)

    def _recover(self) -> tuple[list[DataFile], int]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for p in layout.remove_leftovers(self.data_dir):
            log.warning("removed %s, left by an interrupted write (its events are kept elsewhere)", p)
        files = layout.scan(self.data_dir)
        wal_dir = self.data_dir / "wal"
        wal_dir.mkdir(exist_ok=True)
        segments = sorted(wal_dir.glob("*.wal"))
        rows = read_segments(segments)
        written = 0
        if rows:
            # Nothing is live yet, so this runs here; the archive's high seqs drop what a crash
            # between a flush and its segment deletion left in both places.
            high = queries.stream_high_seqs(files, sorted({(r[ROW_SESSION], r[ROW_STREAM]) for r in rows}))
            unique = flusher.unique_rows(rows, high)
            files += flusher.write_rows(self.data_dir, unique, self.stream_info,
                                        self.config.parquet_compression_level)
            written = len(unique)
        for seg in segments:
            seg.unlink()
        self.wal = WriteAheadLog(wal_dir)
        return files, written

    async def close(self) -> None:
        """Flush everything to Parquet and close the log (on shutdown)."""
        for pc in self._periodic:
            pc.stop()
        await self.flush()
        if self.wal is not None:
            await asyncio.get_running_loop().run_in_executor(self.io, self._close_wal)
        await asyncio.get_running_loop().run_in_executor(self.io, self.flusher.shutdown)
        self.io.shutdown(wait=True)
        self.readers.shutdown(wait=True)

    def _close_wal(self) -> None:
        assert self.wal is not None
        if not self._unflushed_count:
            for seg in self.wal.rotate():
                seg.unlink()
        self.wal.close()

    def _check_disk(self) -> None:
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError as exc:
            self.writable, self.failure = False, f"data dir unusable: {exc}"
            return
        if free < self.config.min_free_bytes:
            if self.writable:
                log.error("disk nearly full (%d bytes free): refusing new events", free)
            self.writable, self.failure = False, f"disk full ({free} bytes free)"
        elif self.failure and self.failure.startswith("disk full"):
            log.warning("disk space back (%d bytes free): accepting events again", free)
            self.writable, self.failure = True, None

    # --- ingest ------------------------------------------------------------------------------
    async def open_stream(self, session_id: str, stream_id: str, url: str, ua: str) -> int:
        """Register a recorder stream; return the highest seq durably held for it."""
        key = (session_id, stream_id)
        self.stream_info.setdefault(key, (url, ua))
        if key not in self.received:
            files = self.catalog.files()
            high = (await self.read(queries.stream_high_seqs, files, [key])).get(key, 0)
            self.received[key] = max(self.received.get(key, 0), high)
            self.durable[key] = max(self.durable.get(key, 0), high)
        return self.durable.get(key, 0)

    def append(self, records: list[EventRecord]) -> None:
        """Take accepted events: log them (fsync soon, then ack) and queue them for Parquet."""
        if not self.writable:
            raise StorageUnavailable(self.failure or "storage unavailable")
        rows = [rec.row() for rec in records]  # the records themselves (and frames) can go now
        self._wal_pending.extend(rows)
        for row in rows:
            st = self._unflushed.get(row[ROW_SESSION])
            if st is None:
                st = self._unflushed[row[ROW_SESSION]] = PendingStats(row[ROW_SERVER_TIME], row[ROW_SERVER_TIME])
            st.last_event_at = row[ROW_SERVER_TIME]
            st.event_count += 1
            st.bytes += len(row[ROW_DATA])
            st.records.append(row)
        self._unflushed_count += len(records)
        if self._wal_task is None:
            self._wal_task = asyncio.ensure_future(self._sync_soon())
        if self._unflushed_count >= self.config.flush_max_events and not self._flush_lock.locked():
            asyncio.ensure_future(self.flush())

    async def _sync_soon(self) -> None:
        # Group commit: one fsync covers every event that arrived during the interval.
        try:
            await asyncio.sleep(self.config.wal_sync_interval)
            await self.sync_wal()
        finally:
            self._wal_task = None
            if self._wal_pending and self.writable:
                self._wal_task = asyncio.ensure_future(self._sync_soon())

    async def sync_wal(self) -> None:
        """Write and fsync everything pending to the WAL, then acknowledge it to recorders."""
        await self._log()

    async def _log(self, rotate: bool = False) -> list[Path] | None:
        """Log what is pending (and, with `rotate`, close the segment); None if the WAL failed.

        The I/O thread is serial, so the closed segments hold exactly every record appended
        before this call: the ones already submitted by earlier calls and the ones taken here.
        """
        batch, self._wal_pending = self._wal_pending, []
        if not batch and not rotate:
            return None
        assert self.wal is not None
        try:
            segments = await asyncio.get_running_loop().run_in_executor(
                self.io, self._log_job, batch, rotate)
        except OSError as exc:
            self._wal_pending = batch + self._wal_pending
            self.writable, self.failure = False, f"write-ahead log failed: {exc}"
            log.error("WAL write failed, refusing events until it works again: %s", exc)
            IOLoop.current().call_later(1.0, self._retry_wal)
            return None
        highs: dict[StreamKey, int] = {}
        for row in batch:
            key = (row[ROW_SESSION], row[ROW_STREAM])
            if row[ROW_SEQ] > highs.get(key, 0):
                highs[key] = row[ROW_SEQ]
        for key, seq in highs.items():
            if seq > self.durable.get(key, 0):
                self.durable[key] = seq
            for listener in tuple(self.ack_listeners.get(key, ())):
                listener(self.durable[key])
        return segments

    def _log_job(self, batch: list[Row], rotate: bool) -> list[Path]:
        assert self.wal is not None
        if batch:
            self.wal.append(batch)
        return self.wal.rotate() if rotate else []

    def _retry_wal(self) -> None:
        if self.failure and self.failure.startswith("write-ahead log"):
            self.writable, self.failure = True, None
        if self._wal_pending:
            asyncio.ensure_future(self.sync_wal())

    # --- flushing --------------------------------------------------------------------------
    async def flush(self) -> None:
        """Move every unflushed event into Parquet, then drop the WAL segments that held them."""
        async with self._flush_lock:
            if not self._unflushed_count:
                return
            # Taken in the same step as the WAL rotation below is queued: the closed segments
            # hold exactly these records (and any left by an earlier failed flush, also here).
            taken = {sid: len(st.records) for sid, st in self._unflushed.items()}
            count = self._unflushed_count
            info = {k: v for k, v in self.stream_info.items() if k[0] in taken}
            segments = await self._log(rotate=True)
            if segments is None:
                return  # the WAL is failing; keep everything in memory and the log
            started = time.monotonic()
            try:
                files, written = await self.in_flusher(  # type: ignore[misc]
                    flusher.segments_to_parquet, self.data_dir, segments, info,
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
            # On the IOLoop, in one step: readers now find these events in Parquet, not memory.
            self.catalog.change(add=files)
            for sid, n in taken.items():
                st = self._unflushed[sid]
                del st.records[:n]
                if not st.records:
                    del self._unflushed[sid]
                else:
                    st.started_at = st.records[0][ROW_SERVER_TIME]
                    st.event_count = len(st.records)
                    st.bytes = sum(len(r[ROW_DATA]) for r in st.records)
            self._unflushed_count -= count
            await asyncio.get_running_loop().run_in_executor(self.io, _unlink_all, segments)

    async def in_flusher(self, fn: Callable[..., object], *args: object) -> object:
        """Run `fn` in the flusher process; a worker that died is replaced and reported as OSError."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.flusher, fn, *args)
        except BrokenProcessPool as exc:
            self.flusher = flusher.make_pool(self.config.flusher_idle)
            raise OSError(f"the flusher process died: {exc}") from exc

    # --- reads -----------------------------------------------------------------------------
    async def read(self, fn: Callable[..., object], *args: object) -> object:
        """Run a query function in the reader pool."""
        return await asyncio.get_running_loop().run_in_executor(self.readers, fn, *args)

    async def list_sessions(self, since: int, before: int | None, q: str | None,
                            limit: int) -> list[dict[str, object]]:
        """Archived sessions merged with unflushed ones (the hub adds the live flag)."""
        with self.catalog.snapshot() as files:
            archived = await self.read(queries.list_sessions, files, since, before, q, limit)
        merged = {s["id"]: s for s in archived}  # type: ignore[union-attr]
        for sid in self._unflushed:
            s = self.merge_unflushed({"id": sid, **merged.get(sid, {})})
            if s["last_event_at"] >= since and (before is None or s["last_event_at"] < before):
                merged[sid] = s
        return sorted(merged.values(), key=lambda s: -int(s["last_event_at"]))[:limit]

    def merge_unflushed(self, summary: dict[str, object]) -> dict[str, object]:
        """Add a session's not-yet-flushed events to an archived summary (which may be bare)."""
        st = self._unflushed.get(str(summary["id"]))
        if st is None:
            return summary
        out = dict(summary)
        out["started_at"] = min(int(summary.get("started_at") or st.started_at), st.started_at)
        out["last_event_at"] = max(int(summary.get("last_event_at") or 0), st.last_event_at)
        out["event_count"] = int(summary.get("event_count") or 0) + st.event_count
        out["bytes"] = int(summary.get("bytes") or 0) + st.bytes
        if not out.get("url"):
            key = (st.records[0][ROW_SESSION], st.records[0][ROW_STREAM]) if st.records else None
            out["url"], out["user_agent"] = self.stream_info.get(key, ("", "")) if key else ("", "")
        return out

    async def session(self, session_id: str) -> tuple[dict[str, object] | None, list[DataFile]]:
        """A session's summary (archive + unflushed) and the files holding it; None if unknown."""
        files = self.catalog.files()
        holding, summary = await self.read(queries.session_files, files, session_id)  # type: ignore[misc]
        if summary is None and session_id not in self._unflushed:
            return None, []
        return self.merge_unflushed(summary or {"id": session_id}), holding

    async def events(self, session_id: str, offset: int, limit: int | None
                     ) -> tuple[list[tuple[str, int, int, str]], bool]:
        """One page of a session's events (archive then unflushed); and whether more follow."""
        with self.catalog.snapshot() as files:
            # Copy the unflushed records now, on the IOLoop, so they match this file snapshot.
            st = self._unflushed.get(session_id)
            pending = sorted(st.records, key=lambda r: (r[ROW_SERVER_TIME], r[ROW_STREAM], r[ROW_SEQ])) if st else []
            holding, summary = await self.read(queries.session_files, files, session_id)  # type: ignore[misc]
            archived_n = int(summary["event_count"]) if summary else 0
            rows: list[tuple[str, int, int, str]] = []
            if offset < archived_n:
                rows = await self.read(queries.session_events, holding, session_id, offset, limit)  # type: ignore[assignment]
        total = archived_n + len(pending)
        start = max(0, offset - archived_n)
        room = None if limit is None else limit - len(rows)
        if room is None or room > 0:
            take = pending[start:] if room is None else pending[start:start + room]
            rows += [(r[ROW_STREAM], r[ROW_SEQ], r[ROW_SERVER_TIME], row_event_json(r))
                     for r in take]
        end = offset + len(rows)
        return rows, end < total

    # --- maintenance -----------------------------------------------------------------------
    async def maintain(self) -> None:
        """Forget idle streams' state, then retention and compaction (in the flusher process)."""
        self.forget_idle_streams()
        await maintenance.run(self.catalog, self.config, self.in_flusher)

    def forget_idle_streams(self) -> None:
        """Drop per-stream state of streams with no recorder and nothing unflushed.

        It is only a cache: a stream that comes back is looked up in the index again.
        """
        for key in [k for k in self.received if k not in self.ack_listeners
                    and k[0] not in self._unflushed]:
            self.received.pop(key, None)
            self.durable.pop(key, None)
            self.stream_info.pop(key, None)


def _unlink_all(paths: list) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def cutoff_24h() -> int:
    """Server time 24 h ago."""
    return now_ms() - DAY_MS

