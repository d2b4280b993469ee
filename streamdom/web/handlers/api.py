"""GET /api/sessions, /api/sessions/<id> and /api/sessions/<id>/events (JSON)."""

from __future__ import annotations

from tornado.iostream import StreamClosedError
from tornado.web import HTTPError

from streamdom.archive.queries import EventRow
from streamdom.archive.reads import SessionQuery
from streamdom.sessions.model import cutoff_24h
from streamdom.web.handlers.base import ViewerHandler
from streamdom.wire import dumps

MAX_LIMIT = 5000  # events per page
MAX_LIST_LIMIT = 1000  # sessions per page
MAX_TEXT = 1024  # characters of a text filter
MAX_TRAITS = 10


class SessionsHandler(ViewerHandler):
    """Search the sessions: live ones and those active in the last 24 h by default
    (docs/PROTOCOL.md, "HTTP API"; README, "Searching sessions"). Bad parameters: 400."""

    async def get(self) -> None:
        """Answer one page of matches and their total."""
        query = self.session_query()
        sessions, total = await self.services.sessions.search(query)
        self.write_json({"sessions": sessions, "total": total, "offset": query.offset,
                         "limit": query.limit})

    def session_query(self) -> SessionQuery:
        """The search the query string asks for, or HTTP 400 saying what is wrong."""
        before = self.int_arg("before", None, 0)
        since = self.int_arg("since", cutoff_24h() if before is None else 0, 0)
        traits = []
        for raw in self.get_query_arguments("trait"):
            key, sep, value = raw.partition(":")
            if not sep or not key:
                raise HTTPError(400, reason="trait must be key:value")
            traits.append((self._text_value("trait", key), self._text_value("trait", value)))
        if len(traits) > MAX_TRAITS:
            raise HTTPError(400, reason=f"at most {MAX_TRAITS} trait filters")
        min_d, max_d = self.int_arg("min_duration", None, 0), self.int_arg("max_duration", None, 0)
        return SessionQuery(
            since=since, before=before, q=self._text("q"), user=self._text("user"), traits=traits,
            url=self._text("url"), clicked=self._text("clicked"),
            has_errors=bool(self._flag("has_errors")), has_rage=bool(self._flag("has_rage")),
            has_dead=bool(self._flag("has_dead")), live=self._flag("live"),
            min_duration=min_d, max_duration=max_d,
            limit=self.int_arg("limit", 100, 1, MAX_LIST_LIMIT), offset=self.int_arg("offset", 0, 0))  # type: ignore[arg-type]

    def _text(self, name: str) -> str | None:
        raw = self.get_query_argument(name, None)
        return None if raw is None or raw == "" else self._text_value(name, raw)

    @staticmethod
    def _text_value(name: str, raw: str) -> str:
        if len(raw) > MAX_TEXT:
            raise HTTPError(400, reason=f"{name} is longer than {MAX_TEXT} characters")
        return raw

    def _flag(self, name: str) -> bool | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return None
        if raw not in ("0", "1"):
            raise HTTPError(400, reason=f"{name} must be 1 or 0")
        return raw == "1"


class SessionHandler(ViewerHandler):
    """One session's summary."""

    async def get(self, session_id: str) -> None:
        """Answer the summary or 404."""
        self.write_json(await self.session_or_404(session_id))


class EventsHandler(ViewerHandler):
    """A session's events in order, a page at a time (X-Next-Offset) or all of them, streamed.

    A page ends early, with X-Next-Offset, once it holds `events_page_max_bytes`; without
    `limit` the whole session is sent in such pieces, each written out before the next is read,
    so no request holds more than one piece in memory.
    """

    async def get(self, session_id: str) -> None:
        """Answer a JSON array of events."""
        await self.session_or_404(session_id)
        offset = self.int_arg("offset", 0, 0) or 0
        limit = self.int_arg("limit", None, 1, MAX_LIMIT)
        meta = self.get_query_argument("meta", "") in ("1", "true")
        budget = self.services.config.events_page_max_bytes
        events = self.services.sessions.events
        rows, more = await events(session_id, offset, limit if limit is not None else MAX_LIMIT,
                                  budget)
        if limit is not None and more:
            self.set_header("X-Next-Offset", str(offset + len(rows)))
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.write("[")
        first = True
        while True:
            if rows:
                self.write(("" if first else ",") + _join(rows, meta))
                first = False
            if limit is not None or not more:
                break
            try:
                await self.flush()  # the client reads this piece while the next one is fetched
            except StreamClosedError:
                return  # the client left
            offset += len(rows)
            rows, more = await events(session_id, offset, MAX_LIMIT, budget)
        self.finish("]")


def _join(rows: list[EventRow], meta: bool) -> str:
    if meta:
        return ",".join(f'{{"streamId":{dumps(st)},"seq":{seq},"recvAt":{recv},"event":{ev}}}'
                        for st, seq, recv, ev in rows)
    return ",".join(r[3] for r in rows)
