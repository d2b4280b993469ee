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

    def contiguous(self, session_id: str, rows: list[Row]) -> list[Row]:
        """The live rows that continue their stream's mark without a gap, marking them relayed.
        After a gap (a live message was lost) a stream's rows wait for the stream to bring the
        missing ones: taken live they would overtake them."""
        highs = self._highs.setdefault(session_id, {})
        out = []
        for row in rows:
            if row[ROW_SEQ] == highs.get(row[ROW_STREAM], 0) + 1:
                highs[row[ROW_STREAM]] = row[ROW_SEQ]
                out.append(row)
        return out

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
                 relayed: HighLookup | None = None) -> None:
        self.js = js
        self.snapshots = snapshots
        self.session_id = session_id
        self.node_id = node_id
        self.on_rows = on_rows
        self.relayed = relayed
        self.start_seq = start_seq  # else the latest snapshot's
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
            J.session_subjects(self.session_id), ordered_consumer=True, deliver_policy=policy,
            config=config, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
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
        """Unsubscribe (the ordered consumer is ephemeral: the server deletes it)."""
        self._stopped = True
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - a dead connection: nothing to release
                log.debug("follower of %s: unsubscribe failed: %s", self.session_id, exc)
            self._sub = None
