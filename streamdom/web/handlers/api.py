"""GET /api/sessions, /api/sessions/<id> and /api/sessions/<id>/events (JSON)."""

from __future__ import annotations

from streamdom.sessions.model import cutoff_24h
from streamdom.web.handlers.base import ViewerHandler
from streamdom.wire import dumps

MAX_LIMIT = 5000


class SessionsHandler(ViewerHandler):
    """Live sessions and those active in the last 24 h (or in [since, before) when given)."""

    async def get(self) -> None:
        """Answer the list."""
        before = self.int_arg("before", None)
        since = self.int_arg("since", cutoff_24h() if before is None else 0)
        limit = min(self.int_arg("limit", 1000) or 1000, MAX_LIMIT)
        q = self.get_query_argument("q", None) or None
        sessions = await self.services.sessions.list(since, before, q, limit)
        self.write_json({"sessions": sessions})


class SessionHandler(ViewerHandler):
    """One session's summary."""

    async def get(self, session_id: str) -> None:
        """Answer the summary or 404."""
        self.write_json(await self.session_or_404(session_id))


class EventsHandler(ViewerHandler):
    """A session's events in order, whole or a page at a time (X-Next-Offset)."""

    async def get(self, session_id: str) -> None:
        """Answer a JSON array of events."""
        await self.session_or_404(session_id)
        offset = max(0, self.int_arg("offset", 0) or 0)
        raw_limit = self.int_arg("limit", None)
        limit = None if raw_limit is None else min(max(1, raw_limit), MAX_LIMIT)
        meta = self.get_query_argument("meta", "") in ("1", "true")
        rows, more = await self.services.sessions.events(session_id, offset, limit)
        if more:
            self.set_header("X-Next-Offset", str(offset + len(rows)))
        if meta:
            body = ",".join(
                f'{{"streamId":{dumps(st)},"seq":{seq},"recvAt":{recv},"event":{ev}}}'
                for st, seq, recv, ev in rows)
        else:
            body = ",".join(r[3] for r in rows)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish("[" + body + "]")
