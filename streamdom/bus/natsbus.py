"""`NatsBus`: cluster mode, with NATS JetStream as the durable log between nodes.

    publish ─┬─> hub: ring buffer + this node's watchers (first: latency is the product)
             ├─> core NATS `sd.live.<node>` ─> nodes following the session (livepath.py)
             └─> StreamPublisher ─> JetStream `SD_EVENTS` ─> ack ─> recorder's ack
                                        │
         other nodes' followers <───────┤ (backlog, and every gap the live path left)
         archivers (durable consumer) <─┘ ─> archive (Parquet / DuckLake) ─> every node reads

No local write-ahead log: an event is acknowledged once JetStream has stored it (on a quorum of
replicas with `--bus-replicas 3`). Presence lives in the `sd_live` bucket, so every node lists
the same sessions. The archive is written by `python -m streamdom archive` processes; a node
only reads it (it rescans the directory every second).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from tornado.ioloop import PeriodicCallback

from streamdom.archive.reads import ArchiveReader
from streamdom.bus import jetstream as J
from streamdom.bus.base import (
    Bus,
    BusUnavailable,
    PendingSummary,
    Presence,
    Producer,
    SessionChange,
    Subscription,
)
from streamdom.bus.follower import Following, Relayed, SessionFollower
from streamdom.bus.livepath import REPORT_EVERY, LivePath
from streamdom.bus.local import LocalProducer, LocalWatch  # hub-backed, as here
from streamdom.bus.presence import PresenceBoard
from streamdom.bus.publisher import StreamKey, StreamPublisher
from streamdom.bus.streams import AckListener, StreamTable
from streamdom.config import Config
from streamdom.ingest.validate import batch_of_rows, batches_from_rows
from streamdom.live.hub import Hub, LiveSession
from streamdom.records import ROW_SEQ, Batch, Row
from streamdom.wire import FrameSink

log = logging.getLogger(__name__)

RECONNECT_GRACE = 3.0  # s disconnected from NATS before ingest refuses events
UNAVAILABLE = "cluster log unavailable (NATS JetStream unreachable or not acknowledging)"


def _ignore(session_id: str, urgent: bool) -> None:
    pass


def new_node_id() -> str:
    """A node id for this process's run: readable, unique, and a valid KV key token."""
    host = J.token(socket.gethostname())[:24]
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class RemotePresence:
    """A session as the presence bucket describes it (satisfies `Presence`)."""

    id: str
    live: bool
    started_at: int
    last_event_at: int
    url: str
    user_agent: str


class NatsBus(Bus):
    """The cluster bus: JetStream for durability and cross-node relay, KV for presence."""

    def __init__(self, config: Config, archive: ArchiveReader) -> None:
        self.config = config
        self.archive = archive
        self.settings = J.BusSettings(config.bus_urls, config.bus_replicas, config.bus_max_age,
                                      config.bus_connect_timeout)
        self.node_id = new_node_id()
        self.streams = StreamTable()
        self.hub = Hub(config)
        self.hub.on_change = self._hub_changed
        self._on_change: SessionChange = _ignore
        self.nc: Client | None = None
        self.objects: J.Objects | None = None
        self.publisher: StreamPublisher | None = None
        self.board: PresenceBoard | None = None
        self.live: LivePath | None = None
        self.followers: dict[str, Following] = {}
        self.relayed = Relayed()  # what this node's watchers got, per session and stream
        self._local: dict[str, LiveSession] = {}  # sessions with a recorder here (presence owner)
        self._snap_seqs: dict[str, int] = {}  # session -> latest snapshot stream seq written
        self._periodic: list[PeriodicCallback] = []
        self._seen_live: set[str] = set()  # sessions live by the bucket at the last heartbeat
        self._down_since = 0.0  # monotonic time the NATS connection was first seen down
        self._tasks: set[asyncio.Future[object]] = set()

    # --- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect (or raise J.BusUnreachable), declare the stream and buckets, load presence."""
        self.nc = await J.connect(self.settings, f"streamdom-{self.node_id}")
        self.objects = await J.declare(self.nc, self.settings)
        self.publisher = StreamPublisher(self.objects.js, self.node_id, self._made_durable,
                                         self._stream_info)
        await self.publisher.start()
        self.board = PresenceBoard(self.objects.presence, self.node_id, self._presence_changed,
                                   self.config.presence_heartbeat)
        await self.board.start()
        self.live = LivePath(self.nc, self.node_id, self.config.presence_heartbeat,
                             self._live_rows, self._reported)
        await self.live.start()
        self.archive.warm_up()
        for fn, seconds in ((self._heartbeat, self.config.presence_heartbeat),
                            (self._report, REPORT_EVERY),
                            (self._forget_idle, self.config.compaction_interval)):
            pc = PeriodicCallback(fn, seconds * 1000)
            pc.start()
            self._periodic.append(pc)
        log.info("cluster node %s on %s (stream %s, R%d)", self.node_id,
                 ", ".join(self.settings.urls), J.STREAM, self.settings.replicas)

    async def close(self) -> None:
        """Wait (a while) for JetStream to ack what is in flight, end this node's sessions."""
        for pc in self._periodic:
            pc.stop()
        if self.publisher is not None and not await self.publisher.drain(10.0):
            log.error("shutting down with events not acknowledged by JetStream: their recorders "
                      "still hold them and will resend")
        if self.publisher is not None:
            await self.publisher.stop()
        if self.board is not None:
            for s in self.hub.sessions.values():
                if s.recorders > 0:
                    self.board.put(s.id, self._entry(s, live=False))
            await self.board.flush()
            await self.board.stop()
        for f in list(self.followers.values()):
            await f.stop()
        if self.live is not None:
            await self.live.stop()
        if self.nc is not None:
            await self.nc.close()

    async def shared_key(self, name: str) -> bytes | None:
        """The cluster's secret `name`, kept in JetStream (the first node to ask makes it)."""
        assert self.objects is not None
        kv = await self.objects.js.create_key_value(KeyValueConfig(
            bucket=J.KEYS, history=1, replicas=self.settings.replicas, storage=StorageType.FILE))
        try:
            await kv.create(name, secrets.token_bytes(32))
        except KeyWrongLastSequenceError:
            pass  # another node made it first: everyone uses that one
        entry = await kv.get(name)
        assert entry.value is not None
        return entry.value

    @property
    def failure(self) -> str | None:
        """Why events are refused: NATS is disconnected, or JetStream stopped acknowledging."""
        if self.nc is None:
            return UNAVAILABLE
        if not self.nc.is_connected:
            # A NATS server going away (a restart, a killed cluster node) costs a reconnect of
            # well under a second: take events meanwhile (they wait, unacked, for the reconnect)
            # rather than send every recorder into a backoff of seconds.
            now = time.monotonic()
            self._down_since = self._down_since or now
            if now - self._down_since > RECONNECT_GRACE:
                return UNAVAILABLE
        else:
            self._down_since = 0.0
        if self.publisher is not None and self.publisher.stalled():
            return UNAVAILABLE
        return None

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- ingest side ---------------------------------------------------------------------------
    async def open_stream(self, session_id: str, stream_id: str, url: str, user_agent: str,
                          on_ack: AckListener) -> Producer:
        """Learn the stream's durable high seq from JetStream (another node may have taken it
        before), mark the session live here and in the presence bucket."""
        key = (session_id, stream_id)
        marks = self.streams.get(key)
        stored = 0
        if marks is None:
            stored = await self._stored_high(key)
            high = max(stored, await self.archive.stream_high_seq(key))
            marks = self.streams.open(key, url, user_agent, high)
        session = self.hub.recorder_joined(session_id, url, user_agent)
        assert self.board is not None
        # Welcomed only once the presence bucket has the session: from then on every node can
        # find it (a watcher may ask another node for it right after).
        await self.board.flush()
        follow = self.followers.get(session_id)
        if follow is not None and not await follow.catch_up(stream_id, stored, 10.0):
            # Its watchers here would miss what JetStream holds beyond what they got.
            log.warning("%s %s: stored events not read back from the stream in time; watchers "
                        "here may miss some", session_id, stream_id)
        self.relayed.advance(session_id, stream_id, marks.received)
        marks.listeners.add(on_ack)
        return LocalProducer(session_id, stream_id, marks, on_ack, session)

    async def _stored_high(self, key: StreamKey) -> int:
        """The last seq of a stream in JetStream (one direct get, last message by subject)."""
        assert self.objects is not None
        try:
            msg = await self.objects.js._jsm.get_last_msg(J.STREAM, J.stream_subject(*key),
                                                          direct=True)
        except NotFoundError:
            return 0
        seqs = (msg.headers or {}).get(J.HDR_SEQ, "0-0")
        return int(seqs.rsplit("-", 1)[1])

    def publish(self, producer: Producer, batch: Batch) -> None:
        """Relay to this node's watchers, then hand to the publisher (acked on JetStream's ack)."""
        failure = self.failure
        if failure is not None:
            raise BusUnavailable(failure)
        assert isinstance(producer, LocalProducer) and self.publisher is not None
        rows = batch.rows
        last = rows[-1][ROW_SEQ]
        producer._marks.received = last
        key = (producer.session_id, producer.stream_id)
        high = self.relayed.advance(*key, last)
        if rows[0][ROW_SEQ] > high:
            self.hub.relay(producer.session, batch)  # relay first: latency is the product
        elif last > high:  # partly relayed already (read back from the stream)
            self.hub.relay(producer.session, batch_of_rows([r for r in rows if r[ROW_SEQ] > high]))
        if self.live is not None:  # to other nodes' watchers, not waiting for the store
            self.live.send(key, rows)
        self.publisher.add(key, rows)

    def _made_durable(self, key: StreamKey, seq: int, snap_seq: int | None) -> None:
        self.streams.made_durable({key: seq})
        if snap_seq is not None and snap_seq > self._snap_seqs.get(key[0], 0):
            self._snap_seqs[key[0]] = snap_seq
            self._spawn(self._put_snapshot(key[0], snap_seq))

    async def _put_snapshot(self, session_id: str, seq: int) -> None:
        assert self.objects is not None
        try:
            await self.objects.snapshots.put(J.token(session_id), str(seq).encode())
        except Exception as exc:  # noqa: BLE001 - late joiners start at an older snapshot
            log.warning("snapshot position of %s not written: %s", session_id, exc)

    def _stream_info(self, key: StreamKey) -> tuple[str, str]:
        marks = self.streams.get(key)
        return (marks.url, marks.user_agent) if marks is not None else ("", "")

    def set_clock(self, producer: Producer, offset: float, rtt: float) -> None:
        """Pass the recorder's clock estimate to this node's watchers of the session."""
        assert isinstance(producer, LocalProducer)
        self.hub.set_clock(producer.session, producer.stream_id, offset, rtt)

    def close_stream(self, producer: Producer, goodbye: bool = False) -> None:
        """Stop acking this connection; the session ends after the grace period (at once after
        a goodbye) if it was the last."""
        assert isinstance(producer, LocalProducer)
        producer._marks.listeners.discard(producer.on_ack)
        self.hub.recorder_left(producer.session, goodbye)

    # --- presence ------------------------------------------------------------------------------
    def _entry(self, s: LiveSession, live: bool) -> dict[str, object]:
        return {"id": s.id, "live": live, "started_at": s.started_at,
                "last_event_at": s.last_event_at, "url": s.url, "user_agent": s.user_agent}

    def _hub_changed(self, session_id: str, urgent: bool) -> None:
        if urgent and self.board is not None:
            # A session recorded here started or ended: tell every node now (heartbeats keep it).
            s = self.hub.sessions.get(session_id)
            if s is not None and s.recorders > 0:
                self._local[session_id] = s
                self.board.put(session_id, self._entry(s, True))
            elif session_id in self._local and (s is None or not s.live):
                ended = self._local.pop(session_id)
                self.board.put(session_id, self._entry(ended, False))
        self._on_change(session_id, urgent)

    def _heartbeat(self) -> None:
        assert self.board is not None
        for s in self.hub.sessions.values():
            if s.recorders > 0:
                self.board.put(s.id, self._entry(s, True))
        # A node killed with -9 never says its sessions ended: they go stale instead, which no
        # bucket change announces. Notice it here, as if the bucket had said so.
        live = {sid for sid, summary in self.board.summaries().items() if summary["live"]}
        for sid in self._seen_live ^ live:
            self._presence_changed(sid, True)
        self._seen_live = live
        if self.live is not None and self.followers:
            self._spawn(self.live.want(list(self.followers)))

    def _presence_changed(self, session_id: str, urgent: bool) -> None:
        s = self.hub.sessions.get(session_id)
        if s is not None and s.watchers:
            if s.recorders == 0 and s.grace is None:
                # Followed from another node (or its recorder moved there): live as it says.
                self.hub.set_live(s, self.board is not None and self.board.live(session_id))
            if session_id not in self.followers and self._recorded_elsewhere(session_id):
                self._spawn(self._follow(s))  # another node records it too now
            elif (session_id in self.followers and s.recorders == 0 and self.board is not None
                  and not self.board.live(session_id)):
                self._spawn(self._read_to_end(session_id))
        self._on_change(session_id, urgent)

    def presence(self) -> Mapping[str, Presence]:
        """Every session in the presence bucket (all nodes), this node's own as it knows them."""
        assert self.board is not None
        out: dict[str, Presence] = {}
        for sid, s in self.board.summaries().items():
            out[sid] = RemotePresence(sid, bool(s["live"]), int(s["started_at"]),  # type: ignore[call-overload]
                                      int(s["last_event_at"]), str(s["url"]),  # type: ignore[call-overload]
                                      str(s["user_agent"]))
        for s in self.hub.sessions.values():
            if s.recorders > 0:  # fresher here than in the bucket (and there before it is)
                p = out.get(s.id)
                out[s.id] = RemotePresence(s.id, True, min(s.started_at, p.started_at) if p else s.started_at,
                                           max(s.last_event_at, p.last_event_at if p else 0),
                                           s.url, s.user_agent)
        return out

    # --- watchers ------------------------------------------------------------------------------
    async def watch(self, session_id: str, sink: FrameSink) -> Subscription | None:
        """Attach to the session here, following it from the stream if other nodes record it."""
        assert self.board is not None
        s = self.hub.sessions.get(session_id)
        others = self._recorded_elsewhere(session_id)
        if s is None:
            summary = self.board.summary(session_id)
            if summary is None or not summary["live"]:
                await self.board.lookup(session_id)  # started elsewhere a moment ago?
                summary = self.board.summary(session_id)
            if summary is None or not summary["live"]:
                return None
            s = self.hub.follow(session_id, str(summary["url"]), str(summary["user_agent"]))
        if others or s.recorders == 0:
            try:
                await self._follow(s)
            except Exception as exc:  # noqa: BLE001 - NATS trouble: no history to give
                log.warning("cannot follow %s from the stream: %s", session_id, exc)
                self._stop_following(session_id)
                return None
        attached = self.hub.add_watcher(session_id, sink)
        return LocalWatch(sink, attached) if attached is not None else None

    def _recorded_elsewhere(self, session_id: str) -> bool:
        assert self.board is not None
        summary = self.board.summary(session_id)
        return bool(summary and any(n != self.node_id for n in summary["nodes"]))  # type: ignore[attr-defined]

    async def _follow(self, s: LiveSession) -> None:
        """Start following the session here (once), and return when its history is in."""
        assert self.objects is not None
        follower = self.followers.get(s.id)
        if follower is None:
            follower = Following(self.objects.js, self.objects.snapshots, s.id, self.node_id,
                                 self.relayed, lambda rows: self._relay_rows(s.id, rows))
            self.followers[s.id] = follower  # before awaiting: a second watcher waits on it
            await follower.start()
            if self.live is not None:  # recording nodes send its events here live from now on
                await self.live.want([s.id])
        else:
            await follower.caught_up.wait()

    def _stop_following(self, session_id: str) -> None:
        follower = self.followers.pop(session_id, None)
        if follower is not None:
            self._spawn(follower.stop())

    def _live_rows(self, session_id: str, rows: list[Row]) -> None:
        follower = self.followers.get(session_id)
        # Before its history is in, a live row could only jump ahead of it: the stream has it.
        if follower is not None and follower.caught_up.is_set():
            follower.live(rows)

    def _reported(self, session_id: str, stream_id: str, seq: int, stream_seq: int) -> None:
        follower = self.followers.get(session_id)
        if follower is not None and follower.caught_up.is_set():
            follower.reported(stream_id, seq, stream_seq)

    def _report(self) -> None:
        if self.live is not None and self.publisher is not None:
            self.live.report(lambda sid: self.publisher.acked.get(sid, {}))  # type: ignore[union-attr]

    async def _read_to_end(self, session_id: str) -> None:
        """The session ended (or its node died): relay what JetStream holds of it beyond what
        the live path brought here (its last live messages may have been lost)."""
        for stream in self.relayed.streams(session_id):
            follower = self.followers.get(session_id)
            if follower is None:
                return
            try:
                high = await self._stored_high((session_id, stream))
            except Exception as exc:  # noqa: BLE001 - NATS trouble: nothing more to read now
                log.warning("end of %s %s not read: %s", session_id, stream, exc)
                return
            await follower.catch_up(stream, high, 10.0)

    def _relay_rows(self, session_id: str, rows: list[Row]) -> None:
        s = self.hub.sessions.get(session_id)
        if s is None or not rows:
            return
        for batch in batches_from_rows(rows):
            self.hub.relay(s, batch)

    def resync(self, sub: Subscription) -> None:
        """`resync`, then the backlog again."""
        assert isinstance(sub, LocalWatch)
        sub.sink.send_frame('{"type":"resync"}', backlog=True)
        self.hub.send_backlog(sub.session, sub.sink)

    def unwatch(self, sub: Subscription) -> None:
        """Detach; stop following the session when its last watcher here left."""
        assert isinstance(sub, LocalWatch)
        self.hub.remove_watcher(sub.session, sub.sink)
        if not sub.session.watchers:
            self._stop_following(sub.session_id)
            self.hub.unfollow(sub.session)
            if sub.session_id not in self.hub.sessions:
                self.relayed.forget(sub.session_id)

    # --- reads ---------------------------------------------------------------------------------
    async def unarchived_summaries(self, ids: Collection[str] | None = None
                                   ) -> dict[str, PendingSummary]:
        """Nothing: in cluster mode a session's figures are the archive's, which lag the stream
        by the archivers' batch time (about a second), and presence keeps every live or recently
        ended session listed meanwhile. Counting the stream's unarchived events per session
        would cost a consumer per session per list push; the list, /api/sessions/<id> and the
        /updates pushes agree this way. (The events themselves come from `unarchived`.)"""
        return {}

    async def unarchived(self, session_id: str) -> list[Row]:
        """The session's events in the stream after the archivers' ack floor (a superset of what
        the archive lacks; the sessions model keeps rows above the archive's highs)."""
        assert self.objects is not None
        try:
            info = await self.objects.js.consumer_info(J.STREAM, J.ARCHIVER)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
        except NotFoundError:  # no archiver ever ran: everything is unarchived
            floor = 0
        rows: list[Row] = []
        follower = SessionFollower(self.objects.js, self.objects.snapshots, session_id, None,
                                   rows.extend, start_seq=floor + 1)
        await follower.start()
        await follower.stop()
        return rows

    def on_session_change(self, callback: SessionChange) -> None:
        """Starts, ends and new events here, and presence changes from other nodes."""
        self._on_change = callback

    # --- background ----------------------------------------------------------------------------
    def _forget_idle(self) -> None:
        self.streams.forget_idle(busy=lambda sid: sid in self.hub.sessions)
        if self.publisher is not None:
            self.publisher.forget(lambda sid: sid in self.hub.sessions)
        if self.live is not None:
            self.live.forget_expired()
        for sid in self.relayed.sessions():
            if sid not in self.hub.sessions:
                self.relayed.forget(sid)
