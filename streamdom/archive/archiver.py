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
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol
from urllib.parse import unquote

import duckdb
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from streamdom.archive import commits, maintenance
from streamdom.archive.lake import Location
from streamdom.bus import jetstream as J
from streamdom.bus.follower import message_rows
from streamdom.bus.lease import Lease
from streamdom.records import Row
from streamdom.signals import SignalTracker

log = logging.getLogger(__name__)

StreamInfo = dict[tuple[str, str], tuple[str, str]]


class ArchiveWriter(Protocol):
    """Where the archiver writes: an idempotent commit, and maintenance."""

    def commit(self, rows: list[Row], stream_info: StreamInfo) -> int:
        """Make `rows` durable in one step, skipping any (session, stream, seq) already there;
        return how many were new. Blocking: called in a worker thread."""

    def maintain(self, holds_lease: Callable[[], bool]) -> None:
        """One retention + compaction pass, checking `holds_lease()` between steps. Blocking."""


class LakeArchive:
    """The DuckLake archive as the archiver's writer (see streamdom.archive.commits).

    Several archivers may commit at once: each commit skips the rows already archived inside
    its DuckLake transaction, and concurrent commits conflict and retry (commits.WRITES_DDL),
    so two archivers never both archive a row. Maintenance is DuckLake's own, under the lease.
    """

    def __init__(self, location: Location, retention_days: int) -> None:
        self.location = location
        self.retention_days = retention_days
        # Clicks at the end of one batch are decided by the next (streamdom/signals.py); with
        # several archivers a stream's batches may go to others: its undecided clicks stay so.
        self.signals = SignalTracker()

    def commit(self, rows: list[Row], stream_info: StreamInfo) -> int:
        """See ArchiveWriter.commit."""
        return commits.commit(commits.writer(self.location), rows, stream_info, tracker=self.signals)

    def maintain(self, holds_lease: Callable[[], bool]) -> None:
        """See ArchiveWriter.maintain. Readers on nodes read the latest snapshot: a pass apart
        is their grace (see maintenance.maintain)."""
        maintenance.maintain(commits.writer(self.location),
                             maintenance.first_kept_day(self.retention_days), holds_lease)


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
                except (OSError, duckdb.Error) as exc:
                    log.error("maintenance failed: %s", exc)
                finally:
                    renewing.cancel()
            await asyncio.sleep(self.maintenance_interval)
