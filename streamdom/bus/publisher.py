"""Publishing recorder streams to JetStream: per stream in order, one batch in flight, acked.

Each stream has at most one message in flight. Events that arrive meanwhile wait and leave
together as the next message once the ack comes back: at low load an event leaves at once, at
high load batches grow by themselves to what one ack round trip accumulates. Serial per stream
also keeps the stream's order in JetStream equal to seq order, even across retries.

A message that is not acked in time (a stream leader election pauses acks for seconds, a
publish made while disconnected waits in the client) is sent again with the same
`Nats-Msg-Id`; JetStream stores it once.

Acks come back on one subscription of the publisher's own (reply subjects `<inbox>.<n>`), not
through nats-py's `publish_async`: its future, semaphore, random token (a getrandom syscall)
and done callbacks cost a message 32-33 us of CPU here, a plain publish answered on one shared
subscription 18-19 us (docs/SCALING.md); and an ack is handled in the turn that brings it, not
a turn later. One sweep every half second sends again what was not acked in time, rather than
a timer per message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError

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
SWEEP_EVERY = 0.5  # s between looks for messages whose ack did not come in time
RETRY_PAUSE = 0.25  # s after a refusal (no stream leader yet) before trying again
STALLED_AFTER = 10.0  # s a message may wait for its ack before the publisher counts as stalled


def starts_segment(row: Row, previous: Row | None) -> bool:
    """Whether a row opens a playable segment: a Meta, or a FullSnapshot not right after one."""
    t = row[ROW_TYPE]
    return t == EventType.Meta or (t == EventType.FullSnapshot and not (
        previous is not None and previous[ROW_TYPE] == EventType.Meta))


def start_now(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run a coroutine now, up to its first suspension, and return a future of its result.

    What asyncio.eager_task_factory does from Python 3.12. nats-py's publish is a coroutine
    that almost never suspends (only when its 2 MB output buffer is full); started in a task it
    would wait for a turn of the IOLoop first, and on a busy node a turn takes milliseconds.
    """
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        future.set_result(done.value)
        return future
    except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
        future.set_exception(exc)
        return future
    return asyncio.ensure_future(_resume(coro, yielded))


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    # `yield from coro` for a coroutine already started: the Task running this waits on what
    # the coroutine yielded (its flags are set as for any await), then steps it on.
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # noqa: BLE001 - a cancellation goes to the coroutine
            step = partial(coro.throw, exc)
        else:
            step = partial(coro.send, sent)
        try:
            yielded = step()
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


@dataclass(slots=True)
class _Message:
    """One message of a stream, sent (again, after a timeout or a refusal) until acked."""

    key: StreamKey
    rows: list[Row]
    snap: bool  # starts a playable segment
    subject: str
    payload: bytes
    headers: dict[str, str]
    token: str = ""  # its reply subject's last token, this attempt's
    sent_at: float = 0.0  # monotonic time of this attempt


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
        self._nc = js._nc
        self._prefix = self._nc.new_inbox() + "."
        self._tokens = 0
        self._waiting: dict[str, _Message] = {}  # reply token -> message waiting for its ack
        self._sweep: asyncio.TimerHandle | None = None
        self._sub: Subscription | None = None
        # session -> stream -> (highest seq acked, stream seq of the message that holds it)
        self.acked: dict[str, dict[str, tuple[int, int]]] = {}
        self.published_messages = 0
        self.published_events = 0
        self.resent = 0  # messages sent again after their ack did not come in time

    async def start(self) -> None:
        """Subscribe to the acks (before the first publish: the same connection, so in order)."""
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def stop(self) -> None:
        """Stop listening for acks (what is not acked stays with its recorders)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - a closed connection: nothing to release
                log.debug("ack subscription: unsubscribe failed: %s", exc)
            self._sub = None

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
        self._attempt(self._message(key, rows, snap))

    def _message(self, key: StreamKey, rows: list[Row], snap: bool) -> _Message:
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
        return _Message(key, rows, snap, J.stream_subject(sid, stream), payload, headers)

    # A message's life is callbacks, not a task: published from the caller's own turn (the
    # ingest of its first event, or the ack of the message before it), its ack handled in the
    # turn that brings it. Each task would have cost a turn of the IOLoop (see start_now).
    def _attempt(self, m: _Message) -> None:
        loop = asyncio.get_running_loop()
        if self._nc.is_closed:
            return  # shutting down: what was not acked stays with its recorder, which resends
        if not self._nc.is_connected:
            # Published now, it would wait in the client's buffer and go out (again) on the
            # reconnect; wait for the reconnect instead, then send it once.
            loop.call_later(RETRY_PAUSE, self._attempt, m)
            return
        self._tokens += 1
        m.token, m.sent_at = str(self._tokens), time.monotonic()
        self._waiting[m.token] = m
        if self._sweep is None:
            self._sweep = loop.call_later(SWEEP_EVERY, self._expire)
        sent = start_now(self._nc.publish(m.subject, m.payload, reply=self._prefix + m.token,
                                          headers=m.headers))
        if sent.done():
            self._published(m, sent)
        else:  # nats-py's buffer was full: it went out when there was room
            sent.add_done_callback(partial(self._published, m))

    def _published(self, m: _Message, sent: asyncio.Future[None]) -> None:
        if sent.cancelled():  # its task was cancelled: the loop is shutting down
            return
        exc = sent.exception()
        if exc is None or self._waiting.pop(m.token, None) is None:
            return  # sent: its ack comes to _on_ack (or it expired meanwhile: sent again)
        if isinstance(exc, nats.errors.MaxPayloadError):
            self._too_large(m)
        else:
            self._retry(m, exc)

    def _expire(self) -> None:
        """Send again every message whose ack has not come within ACK_TIMEOUT."""
        self._sweep = None
        now = time.monotonic()
        for token, m in list(self._waiting.items()):  # in the order sent: the oldest first
            if now - m.sent_at < ACK_TIMEOUT:
                break
            del self._waiting[token]  # a late ack of this attempt is dropped: the resend's counts
            self.resent += 1
            log.info("no JetStream ack for %s %s in %g s: sending it again", m.key,
                     m.headers[J.HDR_SEQ], ACK_TIMEOUT)
            self._attempt(m)
        if self._waiting and self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._expire)

    async def _on_ack(self, msg: Msg) -> None:
        m = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if m is None:
            return  # the ack of an attempt that expired: its resend is acked too (deduplicated)
        if msg.headers and msg.headers.get("Status") == "503":  # no responders: no stream leader
            self._retry(m, NoStreamResponseError())
            return
        try:
            reply = json.loads(msg.data)
            if "error" in reply:
                err = reply["error"]
                self._retry(m, APIError(code=err.get("code"), description=err.get("description")))
            else:
                seq = int(reply["seq"])
                self.acked.setdefault(m.key[0], {})[m.key[1]] = (m.rows[-1][ROW_SEQ], seq)
                self._done(m, seq if m.snap else None)
        except (ValueError, TypeError, KeyError) as exc:
            self._retry(m, exc)

    def _retry(self, m: _Message, exc: BaseException) -> None:
        if isinstance(exc, NoStreamResponseError | nats.errors.Error | OSError):
            # No stream leader yet (an election: JetStream answers at once), a connection
            # lost meanwhile: ask again soon.
            log.debug("publish of %s refused (%s): retrying", m.key, type(exc).__name__)
        else:  # not expected: say so, and keep the stream going rather than stall it
            log.error("publish of %s failed: %r; retrying", m.key, exc)
        asyncio.get_running_loop().call_later(RETRY_PAUSE, self._attempt, m)

    def _too_large(self, m: _Message) -> None:
        if len(m.rows) > 1:  # send it as two messages (each its own dedup id)
            half = len(m.rows) // 2
            st = self._streams[m.key]
            st.batches[:0], st.snap[:0] = [m.rows[half:]], [False]
            self._attempt(self._message(m.key, m.rows[:half], m.snap))
            return
        # One event larger than NATS's max_payload even compressed: it cannot be stored.
        # Say so loudly and go on, or the stream would stall behind it forever.
        log.error("event %s %d is larger than the NATS max_payload (%d bytes compressed):"
                  " not stored; raise max_payload in nats-server's config",
                  m.key, m.rows[0][ROW_SEQ], len(m.payload))
        self._done(m, None)

    def _done(self, m: _Message, snap_seq: int | None) -> None:
        key = m.key
        self.published_messages += 1
        self.published_events += len(m.rows)
        self._oldest_wait.pop(key, None)
        st = self._streams[key]
        st.in_flight = False
        if st.batches:
            self._send(key, st)
        else:
            del self._streams[key]
            if not self._streams and self._drained is not None:
                self._drained.set()
        self.on_durable(key, m.rows[-1][ROW_SEQ], snap_seq)

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop what `acked` says of sessions not to `keep`."""
        self.acked = {sid: v for sid, v in self.acked.items() if keep(sid)}

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued is acked (on shutdown); False if it took too long."""
        if self._streams:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                return False
        return True
