"""Where an event is relayed: which sessions are live here, their ring buffers, fan-out to watchers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from tornado.ioloop import IOLoop

from streamdom.config import Config
from streamdom.live.ring import ENTRY_FRAME, RingBuffer
from streamdom.records import ROW_SERVER_TIME, Batch
from streamdom.wire import FrameSink, dumps, now_ms, watch_hello

log = logging.getLogger(__name__)


def _ignore(session_id: str, urgent: bool) -> None:
    pass


@dataclass
class LiveSession:
    """A session this process relays: live, or ended but still watched."""

    id: str
    ring: RingBuffer
    started_at: int
    last_event_at: int
    url: str = ""
    user_agent: str = ""
    recorders: int = 0
    live: bool = True
    clock_frames: dict[str, str] = field(default_factory=dict)  # stream id -> latest clock frame
    watchers: set[FrameSink] = field(default_factory=set)
    grace: object | None = None


class Hub:
    """Relays events from recorders to watchers through per-session ring buffers."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sessions: dict[str, LiveSession] = {}
        self.ring_bytes = 0
        self._ring_total_max = config.ring_total_max_bytes
        # Told (session id, urgent) when a session starts or ends (urgent) or gains events.
        self.on_change: Callable[[str, bool], None] = _ignore

    # --- recorders -------------------------------------------------------------------------
    def recorder_joined(self, session_id: str, url: str, user_agent: str) -> LiveSession:
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
        if not s.live:
            s.live = True
            self._broadcast(s, '{"type":"live"}')
        self.on_change(session_id, True)
        return s

    def follow(self, session_id: str, url: str, user_agent: str) -> LiveSession:
        """A session recorded on another node, relayed here for this process's watchers (cluster
        mode); it is live until `set_live(False)` and forgotten when its last watcher leaves."""
        s = self.sessions.get(session_id)
        if s is None:
            t = now_ms()
            s = self.sessions[session_id] = LiveSession(session_id, self._new_ring(), t, t, url,
                                                        user_agent)
        return s

    def unfollow(self, s: LiveSession) -> None:
        """Forget a followed session that nobody here watches any more (cluster mode)."""
        if s.recorders == 0 and not s.watchers and s.grace is None and self.sessions.get(s.id) is s:
            self.ring_bytes -= s.ring.nbytes
            del self.sessions[s.id]

    def set_live(self, s: LiveSession, live: bool) -> None:
        """Another node says whether a followed session is live (cluster mode)."""
        if s.live == live:
            return
        s.live = live
        self._broadcast(s, '{"type":"live"}' if live else '{"type":"ended"}')
        if not live:
            self._forget_if_idle(s)

    def recorder_left(self, s: LiveSession, goodbye: bool = False) -> None:
        """A recorder disconnected; the session ends after the grace period if none is left,
        or at once if it said goodbye (its page went away: no reconnect is coming)."""
        s.recorders -= 1
        if s.recorders > 0:
            return
        if goodbye:
            if s.grace is not None:
                IOLoop.current().remove_timeout(s.grace)  # type: ignore[arg-type]
            self._end(s)
        elif s.grace is None:
            s.grace = IOLoop.current().call_later(self.config.grace_seconds, self._end, s)

    def _end(self, s: LiveSession) -> None:
        s.grace = None
        if s.recorders > 0:
            return
        s.live = False
        self._broadcast(s, '{"type":"ended"}')
        self.on_change(s.id, True)
        self._forget_if_idle(s)

    def _forget_if_idle(self, s: LiveSession) -> None:
        # An ended session lives on in the archive; memory keeps it only while someone watches.
        if not s.live and not s.watchers and self.sessions.get(s.id) is s:
            self.ring_bytes -= s.ring.nbytes
            del self.sessions[s.id]

    def relay(self, s: LiveSession, batch: Batch) -> None:
        """Write the batch's prebuilt frame to every watcher, then keep it in the ring."""
        ring = s.ring
        before = ring.nbytes
        frame = batch.frame
        for w in tuple(s.watchers):
            w.send_frame(frame)
        ring.keep(batch)
        s.last_event_at = batch.rows[-1][ROW_SERVER_TIME]
        self.ring_bytes += ring.nbytes - before
        if self.ring_bytes > self._ring_total_max:
            self._evict()
        self.on_change(s.id, False)

    def set_clock(self, s: LiveSession, stream_id: str, offset: float, rtt: float) -> None:
        """Keep a recorder's clock estimate and pass it to watchers."""
        frame = dumps({"type": "clock", "streamId": stream_id, "offset": offset, "rtt": rtt})
        s.clock_frames[stream_id] = frame
        self._broadcast(s, frame)

    def _new_ring(self) -> RingBuffer:
        return RingBuffer(self.config.ring_max_bytes, int(self.config.ring_max_age * 1000))

    def _evict(self) -> None:
        # Over the global budget: empty the rings of the sessions idle longest (not live first).
        victims = sorted(self.sessions.values(), key=lambda x: (x.live, x.last_event_at))
        for v in victims:
            if self.ring_bytes <= self._ring_total_max * 0.9:
                break
            freed = v.ring.nbytes
            v.ring = self._new_ring()
            self.ring_bytes -= freed
            log.warning("ring buffer memory full: evicted session %s (%d bytes)", v.id, freed)

    # --- watchers --------------------------------------------------------------------------
    def add_watcher(self, session_id: str, w: FrameSink) -> LiveSession | None:
        """Attach a watcher to a session in memory: hello, then the backlog; None if not here."""
        s = self.sessions.get(session_id)
        if s is None:
            return None
        w.send_frame(watch_hello(session_id, s.live))
        s.watchers.add(w)
        self.send_backlog(s, w)
        return s

    def send_backlog(self, s: LiveSession, w: FrameSink) -> None:
        """Clock estimates, then the ring from its latest full snapshot, then a caught-up marker."""
        for frame in s.clock_frames.values():
            w.send_frame(frame, backlog=True)
        for entry in s.ring.backlog():
            w.send_frame(entry[ENTRY_FRAME], backlog=True)
        w.send_frame('{"type":"caughtup"}', backlog=True)

    def remove_watcher(self, s: LiveSession, w: FrameSink) -> None:
        """Detach a watcher."""
        s.watchers.discard(w)
        self._forget_if_idle(s)

    def _broadcast(self, s: LiveSession, frame: str) -> None:
        for w in tuple(s.watchers):
            w.send_frame(frame)
