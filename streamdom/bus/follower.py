"""Reading one session from the stream: from its latest full snapshot, then live, in order.

A node runs one follower per session it has watchers for, whatever the number of watchers:
an ordered consumer (ephemeral, flow-controlled; it detects a gap and restarts itself from the
last sequence it delivered), filtered on the session's subjects and started at the stream
sequence of the session's latest snapshot batch (kept in the snapshots bucket). Measured on
loopback: created in 1.5-2.6 ms (R1) / 8-24 ms (R3), about 1000 messages a millisecond-ish of
backlog after that. The stream is complete and in order, but slower than the live path
(livepath.py), which brings most events first; `Relayed` merges the two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from streamdom.bus import jetstream as J
from streamdom.records import ROW_SEQ, ROW_STREAM, Row

log = logging.getLogger(__name__)

RowsCallback = Callable[[list[Row]], None]
HighLookup = Callable[[str, str], int]  # (session, stream) -> highest seq already relayed


class Relayed:
    """Per session and stream, the highest seq relayed to this node's watchers.

    The one judge of which rows are new, whichever source brings them (this node's recorders,
    the stream, the live subjects): each source brings a stream's rows in seq order, but they
    race each other, and a resend or a batch stored twice brings rows again.
    """

    def __init__(self) -> None:
        self._highs: dict[str, dict[str, int]] = {}

    def high(self, session_id: str, stream_id: str) -> int:
        """The highest seq of the stream relayed here (0: none)."""
        return self._highs.get(session_id, {}).get(stream_id, 0)

    def advance(self, session_id: str, stream_id: str, seq: int) -> int:
        """Mark the stream relayed up to `seq` (if higher); return the mark before."""
        highs = self._highs.setdefault(session_id, {})
        high = highs.get(stream_id, 0)
        if seq > high:
            highs[stream_id] = seq
        return high

    def fresh(self, session_id: str, rows: list[Row]) -> list[Row]:
        """The rows above their stream's mark (rows from the stream: complete and in order, so
        whatever is above the mark is next), marking them relayed."""
        highs = self._highs.setdefault(session_id, {})
        out = []
        for row in rows:
            if row[ROW_SEQ] > highs.get(row[ROW_STREAM], 0):
                highs[row[ROW_STREAM]] = row[ROW_SEQ]
                out.append(row)
        return out

    def contiguous(self, session_id: str, rows: list[Row],
                   held: list[Row] | None = None) -> list[Row]:
        """The live rows that continue their stream's mark without a gap, marking them relayed.
        After a gap (a live message was lost) a stream's rows wait for the stream to bring the
        missing ones: taken live they would overtake them. They go to `held`, if given."""
        highs = self._highs.setdefault(session_id, {})
        out = []
        for row in rows:
            high = highs.get(row[ROW_STREAM], 0)
            if row[ROW_SEQ] == high + 1:
                highs[row[ROW_STREAM]] = row[ROW_SEQ]
                out.append(row)
            elif row[ROW_SEQ] > high and held is not None:
                held.append(row)
        return out

    def streams(self, session_id: str) -> list[str]:
        """The streams of a session with marks here."""
        return list(self._highs.get(session_id, ()))

    def forget(self, session_id: str) -> None:
        """Drop a session's marks (it is neither recorded nor watched here any more)."""
        self._highs.pop(session_id, None)

    def sessions(self) -> Iterator[str]:
        """The sessions with marks (a copy: safe to forget while iterating)."""
        return iter(list(self._highs))


async def snapshot_seq(snapshots: KeyValue, session_id: str) -> int | None:
    """The stream sequence of the session's latest snapshot batch, if one is known."""
    try:
        entry = await snapshots.get(J.token(session_id))
    except KeyNotFoundError:
        return None
    return int(entry.value or b"0") or None


def message_rows(msg: Msg) -> list[Row]:
    """The rows a stream message carries."""
    sid, stream = J.parse_subject(msg.subject)
    headers = msg.headers or {}
    return J.decode_rows(sid, stream, msg.data, headers.get(J.HDR_ENC) == "zstd")


class SessionFollower:
    """Delivers a session's events from the stream to `on_rows`, skipping this node's own.

    Messages published by node `node_id` (this node's, relayed here directly when they arrived)
    are skipped by their header, before any decoding; `node_id=None` skips nothing. With
    `relayed`, so are stream messages whose rows were all relayed already (by the live path).
    """

    def __init__(self, js: JetStreamContext, snapshots: KeyValue, session_id: str,
                 node_id: str | None, on_rows: RowsCallback, start_seq: int | None = None,
                 relayed: HighLookup | None = None, subject: str | None = None) -> None:
        self.js = js
        self.snapshots = snapshots
        self.session_id = session_id
        self.node_id = node_id
        self.on_rows = on_rows
        self.relayed = relayed
        self.start_seq = start_seq  # else the latest snapshot's
        self.subject = subject or J.session_subjects(session_id)  # or one stream's subject
        self.last_sseq = 0  # stream sequence of the last message delivered (or skipped)
        self.caught_up = asyncio.Event()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._stopped = False

    async def start(self, timeout: float = 10.0) -> None:
        """Subscribe and wait until the history present at the start has been delivered."""
        start = self.start_seq or await snapshot_seq(self.snapshots, self.session_id)
        if start is None:
            policy, config = DeliverPolicy.ALL, None
        else:
            policy, config = DeliverPolicy.BY_START_SEQUENCE, ConsumerConfig(opt_start_seq=start)
        self._sub = await self.js.subscribe(
            self.subject, ordered_consumer=True, deliver_policy=policy,
            config=config, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
        if self._stopped:  # stopped while subscribing: nothing else would release it
            await self.stop()
            return
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and not info.delivered.stream_seq:
            self.caught_up.set()  # nothing to read up to now
        try:
            await asyncio.wait_for(self.caught_up.wait(), timeout)
        except TimeoutError:
            log.warning("follower of %s: history not read within %g s; going on live",
                        self.session_id, timeout)
            self.caught_up.set()

    async def _on_msg(self, msg: Msg) -> None:
        if self._stopped:
            return
        self.last_sseq = msg.metadata.sequence.stream
        headers = msg.headers or {}
        if headers.get(J.HDR_NODE) != self.node_id and not self._relayed_already(msg, headers):
            try:
                rows = message_rows(msg)
            except (ValueError, UnicodeDecodeError) as exc:
                log.error("undecodable message %s on %s: %s", msg.metadata.sequence.stream,
                          msg.subject, exc)
                rows = []
            if rows:
                self.on_rows(rows)
        if not self.caught_up.is_set() and msg.metadata.num_pending == 0:
            self.caught_up.set()

    def _relayed_already(self, msg: Msg, headers: dict[str, str]) -> bool:
        seqs = headers.get(J.HDR_SEQ)
        if self.relayed is None or not seqs:
            return False
        _, stream = J.parse_subject(msg.subject)
        return int(seqs.rsplit("-", 1)[1]) <= self.relayed(self.session_id, stream)

    async def stop(self) -> None:
        """Unsubscribe and delete the consumer (ephemeral, but the server deletes it only a
        while after its interest went, keeping its state meanwhile: replicated at R3)."""
        self._stopped = True
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
                if self.js._nc.is_connected:  # (disconnected, the request would wait it out)
                    await asyncio.wait_for(self.js.delete_consumer(J.STREAM, sub._consumer), 2.0)
            except Exception as exc:  # noqa: BLE001 - a dead connection: nothing to release
                log.debug("follower of %s: consumer not released: %s", self.session_id, exc)


MAX_HELD = 10_000  # live rows kept per session while the stream repairs a gap before them


class Following:
    """A session this node follows: its history from the stream once, then the live path, and
    the stream again only to repair what the live path missed.

    After the backlog the session's consumer is stopped: the live path brings every event, so
    a consumer would only deliver each message a second time for nothing (nats-py: ~21 us of
    the node's CPU per message, and the server's work to deliver it). A gap is repaired from
    the stream by a consumer on that one recorder stream, started where the stream is known to
    be relayed (`floors`), and stopped once the gap is closed:
    - a live row that does not continue its stream (a lost live message): the rows after the
      gap are held and relayed as soon as the stream brought the missing ones;
    - a recording node's reports (`reported`, about every second): relayed here short of
      what the report before said was durable, the last live messages were lost (or never
      sent: the recording node had not heard this node's want yet);
    - `catch_up`: rows known stored that this node must have relayed before it goes on (a
      recorder moving to this node; its session's end).
    """

    def __init__(self, js: JetStreamContext, snapshots: KeyValue, session_id: str,
                 node_id: str, relayed: Relayed, relay: RowsCallback) -> None:
        self.js = js
        self.snapshots = snapshots
        self.session_id = session_id
        self.node_id = node_id
        self.relayed = relayed
        self.relay = relay  # rows judged new, in order: to this node's watchers
        self.backlog = SessionFollower(js, snapshots, session_id, node_id, self._stream_rows,
                                       relayed=self.relayed.high)
        self.caught_up = self.backlog.caught_up
        self.base = 0  # stream seq up to which the backlog read the session (every stream)
        self.floors: dict[str, int] = {}  # stream -> stream seq up to which it is relayed here
        self.targets: dict[str, int] = {}  # stream -> seq known durable, to relay here
        self._held: dict[str, list[Row]] = {}  # stream -> live rows after a gap, in seq order
        self._repairs: dict[str, SessionFollower] = {}  # stream -> its repairing consumer
        self._closed: dict[str, asyncio.Event] = {}  # stream -> set when its gap is closed
        self._reports: dict[str, int] = {}  # stream -> durable seq its last report said
        self._tasks: set[asyncio.Future[object]] = set()
        self._stopped = False

    async def start(self) -> None:
        """Read the history (from the latest snapshot), then stop reading the stream."""
        await self.backlog.start()
        self.base = max(self.backlog.last_sseq, (self.backlog.start_seq or 1) - 1)
        await self.backlog.stop()

    # --- what arrives --------------------------------------------------------------------------
    def _stream_rows(self, rows: list[Row]) -> None:
        self.relay(self.relayed.fresh(self.session_id, rows))

    def live(self, rows: list[Row]) -> None:
        """Rows from the live path: relay those continuing their stream, hold the rest and
        repair the gap before them."""
        held: list[Row] = []
        self.relay(self.relayed.contiguous(self.session_id, rows, held))
        for row in held:
            stream = row[ROW_STREAM]
            kept = self._held.setdefault(stream, [])
            if len(kept) < MAX_HELD:  # beyond, the stream brings them too
                kept.append(row)
            self._repair(stream)

    def reported(self, stream: str, durable: int, stream_seq: int) -> None:
        """A recording node says the stream is durable up to `durable`, the message holding it
        at `stream_seq`: relayed that far, every row up to there is here. Short of what the
        report before said, the rows are lost on the live path: repair. (Short of this one
        only, they may still be on their way: live rows and reports come on different
        subscriptions, each with its own task in nats-py.)"""
        high = self.relayed.high(self.session_id, stream)
        before = self._reports.get(stream, 0)
        self._reports[stream] = durable
        if high >= durable:
            if stream not in self._repairs:
                self.floors[stream] = max(self.floors.get(stream, self.base), stream_seq)
        elif high < before:
            self.targets[stream] = max(self.targets.get(stream, 0), durable)
            self._repair(stream)

    async def catch_up(self, stream: str, seq: int, timeout: float) -> bool:
        """Relay the stream up to `seq` (stored in JetStream) from the stream; False if that
        took longer than `timeout`."""
        if self.relayed.high(self.session_id, stream) >= seq:
            return True
        self.targets[stream] = max(self.targets.get(stream, 0), seq)
        closed = self._closed.setdefault(stream, asyncio.Event())
        self._repair(stream)
        try:
            await asyncio.wait_for(closed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- repairs -------------------------------------------------------------------------------
    def _repair(self, stream: str) -> None:
        if stream in self._repairs or self._stopped:
            return
        reader = SessionFollower(
            self.js, self.snapshots, self.session_id, self.node_id,
            lambda rows: self._repaired(stream, rows),
            start_seq=self.floors.get(stream, self.base) + 1, relayed=self.relayed.high,
            subject=J.stream_subject(self.session_id, stream))
        self._repairs[stream] = reader
        self._spawn(self._run_repair(stream, reader))

    async def _run_repair(self, stream: str, reader: SessionFollower) -> None:
        try:
            await reader.start()
        except Exception as exc:  # noqa: BLE001 - NATS trouble: the next gap or report retries
            log.warning("repair of %s %s from the stream failed: %s", self.session_id, stream, exc)
            self._repairs.pop(stream, None)
            await reader.stop()
            return
        self._check(stream, reader)  # nothing was missing after all

    def _repaired(self, stream: str, rows: list[Row]) -> None:
        self._stream_rows(rows)
        reader = self._repairs.get(stream)
        if reader is not None:
            self._check(stream, reader)

    def _check(self, stream: str, reader: SessionFollower) -> None:
        """Relay the held rows the stream has caught up with; stop the repair once the gap is
        closed (nothing held, the targets reached)."""
        held = self._held.get(stream)
        if held:
            rest: list[Row] = []
            self.relay(self.relayed.contiguous(self.session_id, held, rest))
            if rest:
                self._held[stream] = rest
                return
            del self._held[stream]
        high = self.relayed.high(self.session_id, stream)
        if high < self.targets.get(stream, 0):
            return
        self.targets.pop(stream, None)
        self.floors[stream] = max(self.floors.get(stream, self.base), reader.last_sseq)
        if self._repairs.get(stream) is reader:
            del self._repairs[stream]
            self._spawn(reader.stop())  # not from its own callback: that would cancel itself
        closed = self._closed.pop(stream, None)
        if closed is not None:
            closed.set()

    def repairing(self) -> list[str]:
        """The streams being repaired from the stream now."""
        return list(self._repairs)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop reading the stream (backlog, repairs)."""
        self._stopped = True
        await self.backlog.stop()
        for reader in list(self._repairs.values()):
            await reader.stop()
        self._repairs.clear()
