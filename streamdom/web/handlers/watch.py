"""WS /watch/<id> (one session to a viewer) and WS /updates (the session list to a viewer)."""

from __future__ import annotations

from streamdom import wire
from streamdom.archive.reads import SessionQuery
from streamdom.bus.base import Subscription
from streamdom.sessions.model import cutoff_24h
from streamdom.web.handlers.base import FrameSocket
from streamdom.wire import CloseCode


class WatchHandler(FrameSocket):
    """Streams one session: hello, the backlog from the latest full snapshot, then live events."""

    sub: Subscription | None = None

    async def open(self, session_id: str) -> None:
        """Subscribe to the live session, or say it is not live (or unknown) and close."""
        self.set_nodelay(True)  # small frames must leave at once: latency is the product
        svc = self.services
        sub = await svc.bus.watch(session_id, self)
        if sub is not None:
            if self.ws_connection is None:  # left while the bus subscribed it
                svc.bus.unwatch(sub)
            else:
                self.sub = sub
            return
        if await svc.sessions.get(session_id) is None:
            self.close(CloseCode.UNKNOWN_SESSION, "unknown session")
            return
        self.send_frame(wire.watch_hello(session_id, False))
        self.close(CloseCode.NORMAL, "not live")

    def on_message(self, message: str | bytes) -> None:
        """Viewers only ping (clock sync)."""
        try:
            msg = wire.parse_frame(message)
            if msg["type"] == "ping":
                self.send_frame(wire.pong(msg, wire.now_ms()))
        except wire.ProtocolError as exc:
            self.close(exc.code, exc.reason)

    def on_lagging(self) -> None:
        """Stop feeding this viewer; it is resynced from the latest snapshot once it drains."""

    def on_drained(self) -> None:
        """Resync: the viewer resets its player and gets the backlog again."""
        if self.sub is not None:
            self.services.bus.resync(self.sub)

    def on_close(self) -> None:
        """Unsubscribe."""
        if self.sub is not None:
            self.services.bus.unwatch(self.sub)
            self.sub = None


class UpdatesHandler(FrameSocket):
    """Pushes the session list: all of it on connect, then one item per change."""

    async def open(self) -> None:
        """Send the current list, then subscribe to changes."""
        svc = self.services
        sessions, total = await svc.sessions.search(SessionQuery(since=cutoff_24h(), limit=1000))
        self.send_frame(wire.dumps({"type": "sessions", "sessions": sessions, "total": total}))
        svc.feed.subscribe(self)

    def on_lagging(self) -> None:
        """A list viewer that stops reading is dropped; it refetches when it reconnects."""
        self.close(CloseCode.TOO_FAR_BEHIND, "too far behind")

    def on_close(self) -> None:
        """Unsubscribe."""
        self.services.feed.unsubscribe(self)
