"""`LocalBus`: the embedded default, everything in this process.

    publish ─┬─> hub: ring buffer + this process's watchers (first: latency is the product)
             └─> WAL (grouped fsync ─> acks) + the log's tail ─> flusher ─> archive (DuckLake)

Durable means fsynced into the local write-ahead log; the log's tail answers reads of what is
not archived yet; the flusher commits it to the archive; maintenance keeps the archive compact and
within retention. All of that is local-only and stays behind this class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping

from tornado.ioloop import PeriodicCallback

from streamdom.archive import maintenance, recovery
from streamdom.archive.flusher import Flusher
from streamdom.archive.lake import Location
from streamdom.archive.reads import ArchiveReader
from streamdom.archive.tail import LogTail
from streamdom.archive.wal import GroupCommit
from streamdom.archive.worker import FlusherProcess
from streamdom.bus.base import (
    Bus,
    BusUnavailable,
    PendingSummary,
    Presence,
    Producer,
    SessionChange,
    Subscription,
)
from streamdom.bus.streams import AckListener, StreamMarks, StreamTable
from streamdom.config import Config
from streamdom.live.hub import Hub, LiveSession
from streamdom.records import ROW_SEQ, Batch, Row
from streamdom.wire import FrameSink

log = logging.getLogger(__name__)


class LocalProducer(Producer):
    """A producer whose session is relayed by this process's hub."""

    __slots__ = ("session",)

    def __init__(self, session_id: str, stream_id: str, marks: StreamMarks, on_ack: AckListener,
                 session: LiveSession) -> None:
        super().__init__(session_id, stream_id, marks, on_ack)
        self.session = session


class LocalWatch(Subscription):
    """A watcher of a session this process's hub relays."""

    __slots__ = ("session",)

    def __init__(self, sink: FrameSink, session: LiveSession) -> None:
        super().__init__(session.id, sink)
        self.session = session


class LocalBus(Bus):
    """Ring buffers, a local write-ahead log and Parquet flushes, in this process."""

    def __init__(self, config: Config, location: Location, archive: ArchiveReader) -> None:
        self.config = config
        self.location = location
        self.archive = archive
        self.streams = StreamTable()
        self.hub = Hub(config)
        self.wal = GroupCommit(config.data_dir / "wal", config.wal_sync_interval,
                               config.min_free_bytes, self.streams.made_durable)
        self.tail = LogTail()
        self.process = FlusherProcess(config.flusher_priority == "idle")
        self.flusher = Flusher(config, location, self.wal, self.tail, archive, self.process,
                               self.streams.info)
        self._kept_version: int | None = None  # the oldest snapshot readers may still use
        self._flush_max = config.flush_max_events
        self._periodic: list[PeriodicCallback] = []

    # --- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Replay the WAL into the archive, start the log and background work."""
        self.process.warm_up()
        recovered, version, holds = await recovery.recover(self.location, self.config.data_dir, self.process)
        self.archive.advance(version)
        if holds:  # an empty archive's table is built in no time by the first search
            self.archive.warm_up()
        if recovered:
            log.info("recovered %d events from the write-ahead log", recovered)
        await self.wal.open()
        for fn, seconds in ((self.flusher.flush, self.config.flush_interval),
                            (self.wal.check_disk, 1.0),
                            (self.upkeep, self.config.compaction_interval)):
            pc = PeriodicCallback(fn, seconds * 1000)
            pc.start()
            self._periodic.append(pc)

    async def close(self) -> None:
        """Flush everything to Parquet, close the log, stop the flusher process."""
        for pc in self._periodic:
            pc.stop()
        await self.flusher.flush()
        await self.wal.close(drop_segments=not self.tail.count)
        await asyncio.to_thread(self.process.shutdown)

    async def upkeep(self) -> None:
        """Forget idle streams' marks, then one maintenance pass (retention, compaction)."""
        self.streams.forget_idle(busy=self.tail.holds)
        # Readers got no snapshot older than the one they were given after the previous pass
        # (flushes only move it forward): older ones may expire now.
        keep_from = self._kept_version if self._kept_version is not None else self.archive.version
        done = await maintenance.run(self.location, self.config.retention_days, keep_from,
                                     self.process.run)
        if done is not None:
            self._kept_version, added = done
            self.archive.advance(self._kept_version, added)

    @property
    def failure(self) -> str | None:
        """Why events are refused now (the log's disk or writes), or None."""
        return self.wal.failure

    # --- ingest side ---------------------------------------------------------------------------
    async def open_stream(self, session_id: str, stream_id: str, url: str, user_agent: str,
                          on_ack: AckListener) -> Producer:
        """Look the stream's marks up (in the archive if new here), mark the session live."""
        key = (session_id, stream_id)
        marks = self.streams.get(key)
        if marks is None:
            high = await self.archive.stream_high_seq(key)
            marks = self.streams.open(key, url, user_agent, high)
        session = self.hub.recorder_joined(session_id, url, user_agent)
        marks.listeners.add(on_ack)
        return LocalProducer(session_id, stream_id, marks, on_ack, session)

    def publish(self, producer: Producer, batch: Batch) -> None:
        """Relay to watchers, then queue for the WAL's next fsync and keep in the tail."""
        if self.wal.failure is not None:
            raise BusUnavailable(self.wal.failure)
        rows = batch.rows
        producer._marks.received = rows[-1][ROW_SEQ]  # the bus's own marks
        # (Only open_stream makes producers here, all LocalProducers: no check on the hot path.)
        self.hub.relay(producer.session, batch)  # type: ignore[attr-defined] # relay first: latency is the product
        self.wal.submit(rows)
        self.tail.hold(rows)
        if self.tail.count >= self._flush_max:
            self.flusher.flush_soon()

    def set_clock(self, producer: Producer, offset: float, rtt: float) -> None:
        """Pass the recorder's clock estimate to the session's watchers (and keep it for new ones)."""
        assert isinstance(producer, LocalProducer)
        self.hub.set_clock(producer.session, producer.stream_id, offset, rtt)

    def close_stream(self, producer: Producer, goodbye: bool = False) -> None:
        """Stop acking this connection; the session ends after the grace period (at once after
        a goodbye) if it was the last."""
        assert isinstance(producer, LocalProducer)
        producer._marks.listeners.discard(producer.on_ack)
        self.hub.recorder_left(producer.session, goodbye)

    # --- watchers ------------------------------------------------------------------------------
    async def watch(self, session_id: str, sink: FrameSink) -> Subscription | None:
        """Attach to the hub's session: hello, backlog from its ring, then live frames."""
        session = self.hub.add_watcher(session_id, sink)
        return LocalWatch(sink, session) if session is not None else None

    def resync(self, sub: Subscription) -> None:
        """`resync`, then the backlog again."""
        assert isinstance(sub, LocalWatch)
        sub.sink.send_frame('{"type":"resync"}', backlog=True)
        self.hub.send_backlog(sub.session, sub.sink)

    def unwatch(self, sub: Subscription) -> None:
        """Detach from the hub's session."""
        assert isinstance(sub, LocalWatch)
        self.hub.remove_watcher(sub.session, sub.sink)

    # --- reads ---------------------------------------------------------------------------------
    def presence(self) -> Mapping[str, Presence]:
        """The hub's sessions (live, or ended and still watched)."""
        return self.hub.sessions

    async def unarchived_summaries(self, ids: Collection[str] | None = None
                                   ) -> dict[str, PendingSummary]:
        """Figures of the tail's sessions (answered without suspending: see Bus)."""
        out: dict[str, PendingSummary] = {}
        pending = self.tail.items() if ids is None else (
            (sid, st) for sid in ids if (st := self.tail.get(sid)) is not None)
        for sid, st in pending:
            marks = self.streams.get(st.first_stream())
            url, ua = (marks.url, marks.user_agent) if marks is not None else ("", "")
            out[sid] = PendingSummary(st.started_at, st.last_event_at, len(st.rows), st.bytes, url, ua,
                                      list(st.streams), st.signals())
        return out

    async def unarchived(self, session_id: str) -> list[Row]:
        """A copy of the session's rows in the tail."""
        st = self.tail.get(session_id)
        return list(st.rows) if st is not None else []

    def on_session_change(self, callback: SessionChange) -> None:
        """The hub reports starts, ends and new events to `callback`."""
        self.hub.on_change = callback
