"""WS /watch/<id> (one session to a viewer) and WS /updates (the session list to a viewer)."""

from __future__ import annotations

import json

from streamdom import wire
from streamdom.archive.storage import cutoff_24h
from streamdom.live.hub import LiveSession
from streamdom.sessions import session_list
from streamdom.web.handlers.base import FrameSocket
from streamdom.wire import CloseCode


class WatchHandler(FrameSocket):
    """Streams one session: hello, the backlog from the latest full snapshot, then live events."""

    session: LiveSession | None = None

    async def open(self, session_id: str) -> None:
        """Attach to the live session, or say it is not live (or unknown) and close."""
        self.set_nodelay(True)  # small frames must leave at once: latency is the product
        svc = self.services
        live = svc.hub.sessions.get(session_id)
        if live is None:
            summary, _ = await svc.storage.session(session_id)
            if summary is None:
                self.close(CloseCode.UNKNOWN_SESSION, "unknown session")
                return
            self.send_frame(wire.watch_hello(session_id, False))
            self.close(CloseCode.NORMAL, "not live")
            return
        self.send_frame(wire.watch_hello(session_id, live.live))
        self.session = svc.hub.add_watcher(session_id, self)

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
        if self.session is not None:
            self.send_frame('{"type":"resync"}', backlog=True)
            self.services.hub.send_backlog(self.session, self)

    def on_close(self) -> None:
        """Detach from the session."""
        if self.session is not None:
            self.services.hub.remove_watcher(self.session, self)
            self.session = None


class UpdatesHandler(FrameSocket):
    """Pushes the session list: all of it on connect, then one item per change."""

    async def open(self) -> None:
        """Send the current list, then subscribe."""
        svc = self.services
        sessions = await session_list(self.services, since=cutoff_24h(), before=None, q=None, limit=1000)
        self.send_frame(json.dumps({"type": "sessions", "sessions": sessions}))
        svc.hub.list_watchers.add(self)

    def on_lagging(self) -> None:
        """A list viewer that stops reading is dropped; it refetches when it reconnects."""
        self.close(CloseCode.TOO_FAR_BEHIND, "too far behind")

    def on_close(self) -> None:
        """Unsubscribe."""
        self.services.hub.list_watchers.discard(self)

