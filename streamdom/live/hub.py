"""The live side: which sessions are live, their ring buffers, and fan-out to viewers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from tornado.ioloop import IOLoop

from streamdom.config import Config
from streamdom.live.ring import ENTRY_FRAME, RingBuffer
from streamdom.records import EventRecord
from streamdom.wire import dumps, now_ms

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Anything that takes pre-encoded text frames: a /watch or /updates connection."""

    def send_frame(self, frame: str | bytes, backlog: bool = False) -> None:
        """Queue one frame for sending (backlog frames bypass the lag bound); never blocks."""


@dataclass
class StreamState:
    """One recorder stream (a page load in a tab) of a session."""

    high_seq: int = 0
    clock_frame: str | None = None


@dataclass
class LiveSession:
    """In-memory state of a session seen by this process."""

    id: str
    ring: RingBuffer
    started_at: int
    last_event_at: int
    url: str = ""
    user_agent: str = ""
    event_count: int = 0
    bytes: int = 0
    recorders: int = 0
    live: bool = True
    streams: dict[str, StreamState] = field(default_factory=dict)
    watchers: set[FrameSink] = field(default_factory=set)
    grace: object | None = None
    last_notified: float = 0.0
    notify_pending: bool = False

    def summary(self) -> dict[str, object]:
        """The /api/sessions item for what this process holds in memory."""
        return {
            "id": self.id, "live": self.live, "started_at": self.started_at,
            "last_event_at": self.last_event_at, "event_count": self.event_count,
            "bytes": self.bytes, "url": self.url, "user_agent": self.user_agent,
        }


class Hub:
    """Relays events from recorders to viewers through per-session ring buffers."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sessions: dict[str, LiveSession] = {}
        self.list_watchers: set[FrameSink] = set()
        self.ring_bytes = 0
        # Called with a session summary whenever the session list changes (the storage merges it).
        self.summary_hook: Callable[[dict[str, object]], dict[str, object]] = lambda s: s

    # --- recorders -------------------------------------------------------------------------
    def recorder_joined(self, session_id: str, stream_id: str, url: str, user_agent: str) -> LiveSession:
        """Mark a session live (creating it) because a recorder connected."""
        s = self.sessions.get(session_id)
        t = now_ms()
        if s is None:
            s = LiveSession(session_id, self._new_ring(), t, t, url, user_agent)
            self.sessions[session_id] = s
        if s.grace is not None:
            IOLoop.current().remove_timeout(s.grace)  # type: ignore[arg-type]
            s.grace = None
        s.recorders += 1
        s.url = s.url or url
        s.user_agent = s.user_agent or user_agent
        s.streams.setdefault(stream_id, StreamState())
        if not s.live:
            s.live = True
            self._broadcast(s, '{"type":"live"}')
        self.notify(s, force=True)
        return s

    def recorder_left(self, s: LiveSession) -> None:
        """A recorder disconnected; the session ends after the grace period if none is left."""
        s.recorders -= 1
        if s.recorders <= 0 and s.grace is None:
            s.grace = IOLoop.current().call_later(self.config.grace_seconds, self._end, s)

    def _end(self, s: LiveSession) -> None:
        s.grace = None
        if s.recorders > 0:
            return
        s.live = False
        self._broadcast(s, '{"type":"ended"}')
        self.notify(s, force=True)
        self._forget_if_idle(s)

    def _forget_if_idle(self, s: LiveSession) -> None:
        # An ended session lives on in the archive; memory keeps it only while someone watches.
        if not s.live and not s.watchers and self.sessions.get(s.id) is s:
            self.ring_bytes -= s.ring.nbytes
            del self.sessions[s.id]

    def publish(self, s: LiveSession, records: Iterable[EventRecord]) -> None:
        """Relay accepted events to every viewer first, then keep them in the ring."""
        ring = s.ring
        before = ring.nbytes
        for rec in records:
            for w in tuple(s.watchers):
                w.send_frame(rec.frame)
            ring.keep(rec)
            s.event_count += 1
            s.bytes += len(rec.data)
            s.last_event_at = rec.server_time
        self.ring_bytes += ring.nbytes - before
        if self.ring_bytes > self.config.ring_total_max_bytes:
            self._evict()
        self.notify(s)

    def set_clock(self, s: LiveSession, stream_id: str, offset: float, rtt: float) -> None:
        """Store a recorder's clock estimate and pass it to viewers."""
        st = s.streams.setdefault(stream_id, StreamState())
        st.clock_frame = dumps({"type": "clock", "streamId": stream_id, "offset": offset, "rtt": rtt})
        self._broadcast(s, st.clock_frame)

    def _new_ring(self) -> RingBuffer:
        return RingBuffer(self.config.ring_max_bytes, int(self.config.ring_max_age * 1000))

    def _evict(self) -> None:
        # Over the global budget: empty the rings of the sessions idle longest (not live first).
        victims = sorted(self.sessions.values(), key=lambda x: (x.live, x.last_event_at))
        for v in victims:
            if self.ring_bytes <= self.config.ring_total_max_bytes * 0.9:
                break
            freed = v.ring.nbytes
            v.ring = self._new_ring()
            self.ring_bytes -= freed
            log.warning("ring buffer memory full: evicted session %s (%d bytes)", v.id, freed)

    # --- viewers ---------------------------------------------------------------------------
    def add_watcher(self, session_id: str, w: FrameSink) -> LiveSession | None:
        """Attach a viewer to a session in memory and send it the backlog; None if not in memory."""
        s = self.sessions.get(session_id)
        if s is None:
            return None
        s.watchers.add(w)
        self.send_backlog(s, w)
        return s

    def send_backlog(self, s: LiveSession, w: FrameSink) -> None:
        """Clock estimates, then the ring from its latest full snapshot, then a caught-up marker."""
        for st in s.streams.values():
            if st.clock_frame:
                w.send_frame(st.clock_frame, backlog=True)
        for entry in s.ring.backlog():
            w.send_frame(entry[ENTRY_FRAME], backlog=True)
        w.send_frame('{"type":"caughtup"}', backlog=True)

    def remove_watcher(self, s: LiveSession, w: FrameSink) -> None:
        """Detach a viewer."""
        s.watchers.discard(w)
        self._forget_if_idle(s)

    def _broadcast(self, s: LiveSession, frame: str) -> None:
        for w in tuple(s.watchers):
            w.send_frame(frame)

    # --- session list ------------------------------------------------------------------------
    def notify(self, s: LiveSession, force: bool = False) -> None:
        """Tell /updates subscribers about a session: at once on start/end, else at most 1/s."""
        if not self.list_watchers:
            return
        loop = IOLoop.current()
        t = loop.time()
        if force or t - s.last_notified >= 1.0:
            s.last_notified = t
            frame = dumps({"type": "session", "session": self.summary_hook(s.summary())})
            for w in tuple(self.list_watchers):
                w.send_frame(frame)
        elif not s.notify_pending:
            s.notify_pending = True
            loop.call_later(1.0 - (t - s.last_notified), self._deferred_notify, s)

    def _deferred_notify(self, s: LiveSession) -> None:
        s.notify_pending = False
        self.notify(s, force=True)

    def live_summaries(self) -> list[dict[str, object]]:
        """Summaries of every session in memory."""
        return [s.summary() for s in self.sessions.values()]
