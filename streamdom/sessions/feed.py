"""The session list's change feed (WS /updates): changed sessions' summaries, pushed.

The bus says which session changed; the feed pushes that session's summary from the read
model, so a pushed item is exactly what /api/sessions would say of it. A session that starts
or ends is pushed at once; sessions that gained events are pushed together at most once per
`interval`, one read for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from streamdom.sessions.model import Sessions
from streamdom.wire import FrameSink, dumps

log = logging.getLogger(__name__)


class SessionFeed:
    """Pushes `{"type": "session", "session": {...}}` frames to /updates subscribers."""

    def __init__(self, sessions: Sessions, interval: float = 1.0) -> None:
        self.sessions = sessions
        self.interval = interval
        self._sinks: set[FrameSink] = set()
        self._dirty: set[str] = set()
        self._urgent = False
        self._timer: asyncio.TimerHandle | None = None
        self._pushing = False
        self._last = 0.0

    def subscribe(self, sink: FrameSink) -> None:
        """Send `sink` every change from now on."""
        self._sinks.add(sink)

    def unsubscribe(self, sink: FrameSink) -> None:
        """Stop sending to `sink`."""
        self._sinks.discard(sink)

    def changed(self, session_id: str, urgent: bool) -> None:
        """A session started or ended (urgent) or gained events: push it soon. On the relay's
        path, so it only notes the change when someone listens."""
        if not self._sinks:
            return
        self._dirty.add(session_id)
        if urgent:
            self._urgent = True
        self._schedule()

    def _schedule(self) -> None:
        if self._pushing:
            return  # the push running now schedules the next one when it is done
        loop = asyncio.get_running_loop()
        if self._urgent:
            delay = 0.0
        elif self._timer is not None:
            return
        else:
            delay = max(0.0, self._last + self.interval - time.monotonic())
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(delay, self._start_push)

    def _start_push(self) -> None:
        self._timer = None
        asyncio.ensure_future(self._push())

    async def _push(self) -> None:
        self._pushing = True
        ids, self._dirty, self._urgent = self._dirty, set(), False
        self._last = time.monotonic()
        try:
            summaries = await self.sessions.summaries(ids)
        except Exception:  # noqa: BLE001 - a failed read must not stop the feed
            log.exception("session list update failed")
            summaries = {}
        finally:
            self._pushing = False
        for s in summaries.values():
            frame = dumps({"type": "session", "session": s})
            for sink in tuple(self._sinks):
                sink.send_frame(frame)
        if self._dirty:
            self._schedule()
