"""Publishing recorder streams to JetStream: per stream in order, one batch in flight, acked.

Each stream has at most one message in flight. Events that arrive meanwhile wait and leave
together as the next message once the ack comes back: at low load an event leaves at once, at
high load batches grow by themselves to what one ack round trip accumulates. Serial per stream
also keeps the stream's order in JetStream equal to seq order, even across retries.

A message that is not acked in time (a stream leader election pauses acks for seconds, a
publish made while disconnected waits in the client) is sent again with the same
`Nats-Msg-Id`; JetStream stores it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import quote

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from streamdom.bus import jetstream as J
from streamdom.records import ROW_SEQ, ROW_TYPE, Row
from streamdom.rrweb import EventType

log = logging.getLogger(__name__)
T = TypeVar("T")

StreamKey = tuple[str, str]
# (stream, highest seq now durable, stream seq of the message if it starts a snapshot segment)
DurableCallback = Callable[[StreamKey, int, int | None], None]
StreamInfoLookup = Callable[[StreamKey], tuple[str, str]]  # (page URL, user agent)

_SAFE = " !#$&'()*+,/:;=?@[]~"  # printable and harmless in a header value: left as they are
MAX_BATCH_BYTES = 512 * 1024  # of row text: NATS refuses messages over max_payload (1 MB default)
ACK_TIMEOUT = 2.0  # s before the same message is sent again
RETRY_PAUSE = 0.25  # s after a refusal (no stream leader yet) before trying again
STALLED_AFTER = 10.0  # s a message may wait for its ack before the publisher counts as stalled


def starts_segment(row: Row, previous: Row | None) -> bool:
    """Whether a row opens a playable segment: a Meta, or a FullSnapshot not right after one."""
    t = row[ROW_TYPE]
    return t == EventType.Meta or (t == EventType.FullSnapshot and not (
        previous is not None and previous[ROW_TYPE] == EventType.Meta))


async def within(future: asyncio.Future[T], timeout: float) -> T:
    """`await future`, cancelling it and raising TimeoutError after `timeout` seconds.

    asyncio.wait_for does the same through a second future, which costs the ack one more turn
    of the IOLoop; on a busy node every turn is milliseconds, and an ack waits for several.
    """
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        timed_out = True
        future.cancel()

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await future
    except asyncio.CancelledError:
        if timed_out:
            raise TimeoutError from None
        raise  # this task was cancelled
    finally:
        timer.cancel()


@dataclass
class _Stream:
    batches: list[list[Row]] = field(default_factory=list)  # waiting, cut at snapshot starts
    snap: list[bool] = field(default_factory=list)  # per waiting batch: starts a segment
    size: int = 0  # row text bytes of the last waiting batch
    last: Row | None = None  # the last row taken
    in_flight: bool = False


class StreamPublisher:
    """Publishes rows of recorder streams; reports each stream's durable seq as acks arrive."""

    def __init__(self, js: JetStreamContext, node_id: str, on_durable: DurableCallback,
                 info: StreamInfoLookup) -> None:
        self.js = js
        self.node_id = node_id
        self.on_durable = on_durable
        self.info = info
        self._streams: dict[StreamKey, _Stream] = {}
        self._oldest_wait: dict[StreamKey, float] = {}  # streams whose message is in flight
        self._drained: asyncio.Event | None = None
        self.published_messages = 0
        self.published_events = 0

    def add(self, key: StreamKey, rows: list[Row]) -> None:
        """Queue new rows of one stream (in seq order) and send them as soon as it may."""
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream()
        for row in rows:
            size = len(row[6]) + 64
            if (not st.batches or starts_segment(row, st.last)
                    or st.size + size > MAX_BATCH_BYTES):
                st.batches.append([])
                st.snap.append(starts_segment(row, st.last))
                st.size = 0
            st.batches[-1].append(row)
            st.size += size
            st.last = row
        if not st.in_flight:
            self._send(key, st)

    def stalled(self) -> bool:
        """Whether some message has waited for its ack longer than STALLED_AFTER."""
        # Asked for every batch ingested: O(1). Entries go in as messages are sent and out as
        # they are acked, so the dict's first value is the oldest wait.
        for since in self._oldest_wait.values():
            return time.monotonic() - since > STALLED_AFTER
        return False

    def idle(self) -> bool:
        """Whether nothing is waiting or in flight."""
        return not self._streams

    def _send(self, key: StreamKey, st: _Stream) -> None:
        rows, snap = st.batches.pop(0), st.snap.pop(0)
        if not st.batches:
            st.size = 0
        st.in_flight = True
        self._oldest_wait[key] = time.monotonic()
        asyncio.ensure_future(self._publish(key, rows, snap))

    async def _publish(self, key: StreamKey, rows: list[Row], snap: bool) -> None:
        sid, stream = key
        first, last = rows[0][ROW_SEQ], rows[-1][ROW_SEQ]
        payload, compressed = J.encode_rows(rows)
        headers = {J.HDR_ID: J.msg_id(sid, stream, first, last), J.HDR_NODE: self.node_id,
                   J.HDR_SEQ: f"{first}-{last}"}
        if compressed:
            headers[J.HDR_ENC] = "zstd"
        if snap:  # the archivers' index wants the hello's URL and user agent: send them here
            url, ua = self.info(key)
            headers.update({J.HDR_SNAP: "1", J.HDR_URL: quote(url, safe=_SAFE),
                            J.HDR_UA: quote(ua, safe=_SAFE)})
        subject = J.stream_subject(sid, stream)
        while True:
            if not self.js._nc.is_connected:
                # Published now, it would wait in the client's buffer and go out (again) on the
                # reconnect; wait for the reconnect instead, then send it once.
                await asyncio.sleep(RETRY_PAUSE)
                continue
            try:
                future = await self.js.publish_async(subject, payload, headers=dict(headers))
                ack = await within(future, ACK_TIMEOUT)
                break
            except TimeoutError:
                log.info("no JetStream ack for %s %d-%d in %g s: sending it again", key, first,
                         last, ACK_TIMEOUT)
            except nats.errors.MaxPayloadError:
                if len(rows) > 1:  # send it as two messages (each its own dedup id)
                    half = len(rows) // 2
                    st = self._streams[key]
                    st.batches[:0], st.snap[:0] = [rows[half:]], [False]
                    await self._publish(key, rows[:half], snap)
                    return
                # One event larger than NATS's max_payload even compressed: it cannot be
                # stored. Say so loudly and go on, or the stream would stall behind it forever.
                log.error("event %s %d is larger than the NATS max_payload (%d bytes compressed):"
                          " not stored; raise max_payload in nats-server's config",
                          key, first, len(payload))
                ack = None
                break
            except (NoStreamResponseError, nats.errors.Error, OSError) as exc:
                log.debug("publish of %s refused (%s): retrying", key, type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE)
        self.published_messages += 1
        self.published_events += len(rows)
        self._oldest_wait.pop(key, None)
        st = self._streams[key]
        st.in_flight = False
        if st.batches:
            self._send(key, st)
        else:
            del self._streams[key]
            if not self._streams and self._drained is not None:
                self._drained.set()
        self.on_durable(key, last, ack.seq if snap and ack is not None else None)

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued is acked (on shutdown); False if it took too long."""
        if self._streams:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                return False
        return True
