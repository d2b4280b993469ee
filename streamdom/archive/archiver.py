"""The cluster archiver: JetStream → the archive, acked only after the archive committed.

`python -m streamdom archive --bus ...` runs `run_archiver`. It pulls batches from the durable
consumer `archiver` (shared by every archiver: each message goes to one of them), decodes their
rows, commits them through an `ArchiveWriter` (which drops rows whose (session, stream, seq) the
archive already holds), and only then acks the messages. A crash between the commit and the
acks redelivers the batch; the writer's dedup makes that a no-op. So rows are exactly-once.

Acks are explicit, one per message: with AckAll, an archiver acking its last message would also
ack the earlier messages another archiver is still writing.

Maintenance (retention, compaction) runs only while this archiver holds the `maintenance` lease,
so two archivers never compact the same day.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from streamdom.archive.layout import DataFile
from streamdom.bus import jetstream as J
from streamdom.bus.follower import message_rows
from streamdom.bus.lease import Lease
from streamdom.records import Row

log = logging.getLogger(__name__)

StreamInfo = dict[tuple[str, str], tuple[str, str]]


class ArchiveWriter(Protocol):
    """Where the archiver writes: an idempotent commit, and maintenance."""

    def commit(self, rows: list[Row], stream_info: StreamInfo) -> int:
        """Make `rows` durable in one step, skipping any (session, stream, seq) already there;
        return how many were new. Blocking: called in a worker thread."""

    def maintain(self, holds_lease: Callable[[], bool]) -> None:
        """One retention + compaction pass, checking `holds_lease()` between steps. Blocking."""


class ParquetArchive:
    """Today's day-partitioned Parquet files and index under a data directory, as a writer.

    Several archivers may write one directory: each commit holds an exclusive `flock` on
    `<data-dir>/.archive.lock` while it looks up which of its rows are archived and writes the
    rest, so two commits never both see a row as new. The lookup is by exact (session, stream,
    seq), not by a stream's highest seq: two archivers may commit a stream's batches out of
    order. (flock needs a local disk or a file system that honours it; the DuckLake archive of
    issue 14 replaces this with catalog transactions.) Compaction under the lease rewrites files
    that readers on other nodes may hold open.
    """

    def __init__(self, data_dir: Path, level: int, retention_days: int, min_files: int) -> None:
        self.data_dir = Path(data_dir)
        self.level = level
        self.retention_days = retention_days
        self.min_files = min_files
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def commit(self, rows: list[Row], stream_info: StreamInfo) -> int:
        """See ArchiveWriter.commit."""
        from streamdom.archive import flusher, layout

        with open(self.data_dir / ".archive.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            have = archived_keys(layout.scan(self.data_dir), rows)
            new: list[Row] = []
            for r in rows:
                key = (r[0], r[1], r[2])
                if key not in have:
                    have.add(key)  # also drops repeats inside the batch
                    new.append(r)
            if new:
                flusher.write_rows(self.data_dir, new, stream_info, self.level)
        return len(new)

    def maintain(self, holds_lease: Callable[[], bool]) -> None:
        """See ArchiveWriter.maintain."""
        from streamdom.archive import layout, maintenance

        files = layout.scan(self.data_dir)
        for f in maintenance.expired_files(files, self.retention_days):
            if not holds_lease():
                return
            f.index.unlink(missing_ok=True)
            f.events.unlink(missing_ok=True)
        for group in maintenance.compaction_groups(layout.scan(self.data_dir), self.min_files):
            if not holds_lease():
                return
            maintenance.compact(self.data_dir, group, self.level)
            for f in group:
                f.index.unlink(missing_ok=True)
                f.events.unlink(missing_ok=True)


def archived_keys(files: list[DataFile], rows: list[Row]) -> set[tuple[str, str, int]]:
    """Which (session, stream, seq) of `rows` the Parquet files already hold."""
    from streamdom.archive import queries

    if not files or not rows:
        return set()
    sql = ("SELECT session_id, stream_id, seq FROM read_parquet(?) "
           "WHERE session_id IN (SELECT unnest(?)) AND seq BETWEEN ? AND ?")
    params = [[str(f.events) for f in files], sorted({r[0] for r in rows}),
              min(r[2] for r in rows), max(r[2] for r in rows)]
    return {(a, b, int(c)) for a, b, c in queries.cursor().execute(sql, params).fetchall()}


def stream_info_of(msgs: list[Msg]) -> StreamInfo:
    """Page URL and user agent of the streams whose messages carry them (snapshot batches)."""
    out: StreamInfo = {}
    for m in msgs:
        h = m.headers or {}
        if J.HDR_URL in h or J.HDR_UA in h:
            out[J.parse_subject(m.subject)] = (unquote(h.get(J.HDR_URL, "")),
                                               unquote(h.get(J.HDR_UA, "")))
    return out


class Archiver:
    """One archiver process's loop: fetch, commit, ack; maintenance under the lease."""

    def __init__(self, settings: J.BusSettings, writer: ArchiveWriter, batch: int = 5000,
                 maintenance_interval: float = 60.0, redeliver_after: float = 30.0) -> None:
        self.settings = settings
        self.writer = writer
        self.batch = batch
        self.maintenance_interval = maintenance_interval
        self.redeliver_after = redeliver_after  # the consumer's ack wait
        self.holder = f"{socket.gethostname()}-{os.getpid()}"
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="streamdom-archive")
        self.archived = 0  # new rows committed by this process
        self.stop = asyncio.Event()
        self.started = asyncio.Event()  # consuming

    async def run(self) -> None:
        """Archive until `stop` is set; then finish the batch in hand and return."""
        nc = await J.connect(self.settings, f"streamdom-archiver-{self.holder}")
        try:
            objects = await J.declare(nc, self.settings)
            sub = await objects.js.pull_subscribe(
                f"{J.SUBJECT_ROOT}.>", durable=J.ARCHIVER, stream=J.STREAM,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.redeliver_after,
                                      max_ack_pending=100_000, deliver_policy=DeliverPolicy.ALL,
                                      max_deliver=-1))
            lease = Lease(objects.leases, "maintenance", self.holder, self.settings.lease_ttl)
            maint = asyncio.ensure_future(self._maintain(lease))
            log.info("archiver %s: consuming %s", self.holder, J.STREAM)
            self.started.set()
            try:
                while not self.stop.is_set():
                    try:
                        msgs = await sub.fetch(self.batch, timeout=1.0)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                    except nats.errors.Error as exc:
                        log.warning("archiver fetch: %s", exc)
                        await asyncio.sleep(0.5)
                        continue
                    await self._archive(msgs)
            finally:
                maint.cancel()
                await lease.release()
        finally:
            await nc.close()
            self.pool.shutdown(wait=True)

    async def _archive(self, msgs: list[Msg]) -> None:
        rows: list[Row] = []
        for m in msgs:
            try:
                rows.extend(message_rows(m))
            except (ValueError, UnicodeDecodeError) as exc:  # never ours: keep it out, say so
                log.error("archiver: undecodable message on %s skipped: %s", m.subject, exc)
        info = stream_info_of(msgs)
        started = time.monotonic()
        new = await asyncio.get_running_loop().run_in_executor(self.pool, self.writer.commit,
                                                               rows, info)
        self.archived += new
        # Only now: the archive holds every row of these messages.
        await asyncio.gather(*(m.ack() for m in msgs), return_exceptions=True)
        if time.monotonic() - started > self.redeliver_after / 2:
            log.warning("a commit took %.0f s, over half of --redeliver-after (%g s): its messages"
                        " may go to another archiver meanwhile (harmless: commits dedup, but "
                        "wasted work)", time.monotonic() - started, self.redeliver_after)
        log.debug("archived %d messages, %d rows (%d new) in %.0f ms", len(msgs), len(rows), new,
                  1000 * (time.monotonic() - started))

    async def _maintain(self, lease: Lease) -> None:
        loop = asyncio.get_running_loop()
        renewing: asyncio.Task[None] | None = None

        async def keep_renewing() -> None:
            while True:
                await asyncio.sleep(lease.ttl / 4)
                await lease.acquire()

        while True:
            if await lease.acquire():
                renewing = asyncio.ensure_future(keep_renewing())
                try:
                    await loop.run_in_executor(self.pool, self.writer.maintain, lease.held)
                except OSError as exc:
                    log.error("maintenance failed: %s", exc)
                finally:
                    renewing.cancel()
            await asyncio.sleep(self.maintenance_interval)
