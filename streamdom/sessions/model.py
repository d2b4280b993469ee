"""The one read model of sessions: `list`, `get` and `events`, over the bus and the archive.

A session's summary is put together here and nowhere else, from three sources:
- the archive (Parquet, through its index): everything flushed;
- the bus's events not archived yet (figures, or rows);
- the bus's presence: whether it is live now, since when, its page URL.
/api/sessions, /api/sessions/<id>, the pages and the /updates pushes all read it, so they agree.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pyarrow as pa

from streamdom.archive.layout import signal_values
from streamdom.archive.queries import EXTRA_SCHEMA
from streamdom.archive.reads import ArchiveReader, EventRow, SessionQuery
from streamdom.bus.base import Bus, PendingSummary, Presence
from streamdom.records import ROW_SEQ, ROW_SERVER_TIME, ROW_STREAM, row_event_json
from streamdom.useragent import browser_of, os_of
from streamdom.wire import now_ms

DAY_MS = 86_400_000

Summary = dict[str, object]  # the fields of docs/PROTOCOL.md, "Session summaries"


def cutoff_24h() -> int:
    """Server time 24 h ago: the default window of the session list."""
    return now_ms() - DAY_MS


def extra_rows(pending: Mapping[str, PendingSummary], presence: Mapping[str, Presence]) -> pa.Table:
    """What the archive does not hold yet, as index-like rows for the search (EXTRA_SCHEMA):
    one per stream of each session's unarchived events (its figures on the first), and one per
    session present on the bus (live, or ended and still watched)."""
    cols: dict[str, list[object]] = {f.name: [] for f in EXTRA_SCHEMA}

    def add(sid: str, stream: str | None, first: int, last: int, count: int, size: int, url: str,
            ua: str, sig: dict[str, object], live: bool | None) -> None:
        for name, value in (("session_id", sid), ("stream_id", stream), ("first_server_time", first),
                            ("last_server_time", last), ("event_count", count), ("bytes", size),
                            ("url", url or None), ("user_agent", ua or None),
                            ("browser", browser_of(ua) if ua else None),
                            ("os", os_of(ua) if ua else None), *sig.items(), ("live", live)):
            cols[name].append(value)

    for sid, p in pending.items():
        for i, stream in enumerate(p.streams or [None]):  # type: ignore[list-item]
            first = i == 0
            add(sid, stream, p.started_at, p.last_event_at, p.event_count if first else 0,
                p.bytes if first else 0, p.url, p.user_agent,
                signal_values(p.signals if first else None), None)
    for sid, pr in presence.items():
        add(sid, None, pr.started_at, pr.last_event_at, 0, 0, pr.url, pr.user_agent,
            signal_values(None), pr.live)
    return pa.table(cols, schema=EXTRA_SCHEMA)


class Sessions:
    """Every session this server knows, live or archived, as one list."""

    def __init__(self, bus: Bus, archive: ArchiveReader) -> None:
        self.bus = bus
        self.archive = archive

    async def search(self, query: SessionQuery) -> tuple[list[Summary], int]:
        """One page of the sessions matching `query` (live first, then by most recent
        activity) and how many match in all."""
        # The bus's snapshot first, the archive's right after: see Bus.unarchived_summaries.
        pending = await self.bus.unarchived_summaries(query.ids)
        presence = self.bus.presence()
        if query.ids is not None:
            wanted = set(query.ids)
            presence = {k: v for k, v in presence.items() if k in wanted}
        return await self.archive.search(query, extra_rows(pending, presence))

    async def list(self, since: int, before: int | None, q: str | None,
                   limit: int) -> list[Summary]:
        """Sessions active in [since, before) (and, without `before`, every live one), whose
        summary contains `q`, live first, then by most recent activity."""
        return (await self.search(SessionQuery(since=since, before=before, q=q, limit=limit)))[0]

    async def get(self, session_id: str) -> Summary | None:
        """One session's summary, or None if nothing anywhere knows it."""
        return (await self.summaries([session_id])).get(session_id)

    async def summaries(self, ids: Collection[str]) -> dict[str, Summary]:
        """The summaries of these sessions (those known anywhere), by id."""
        if not ids:
            return {}
        found, _ = await self.search(SessionQuery(ids=list(ids), limit=len(ids)))
        return {str(s["id"]): s for s in found}

    async def events(self, session_id: str, offset: int, limit: int | None,
                     max_bytes: int | None = None) -> tuple[list[EventRow], bool]:
        """One page of a session's events in order (archived, then not yet archived), and
        whether more follow. With `max_bytes` the page ends early, at the first event past it
        (it always holds at least one)."""
        # Unarchived rows first, then the archive: whatever a flush moved in between is in
        # both, and only rows above the archive's highest seq of their stream are kept.
        pending = await self.bus.unarchived(session_id)
        page = await self.archive.events(session_id, offset, limit, max_bytes)
        highs = page.stream_highs
        pending = sorted((r for r in pending if r[ROW_SEQ] > highs.get(r[ROW_STREAM], 0)),
                         key=lambda r: (r[ROW_SERVER_TIME], r[ROW_STREAM], r[ROW_SEQ]))
        rows = page.rows
        full = max_bytes is not None and len(rows) < (page.total - offset if limit is None
                                                      else min(limit, page.total - offset))
        start = max(0, offset - page.total)
        room = None if limit is None else limit - len(rows)
        if not full and (room is None or room > 0):
            used = sum(len(r[3]) for r in rows)
            for r in pending[start:] if room is None else pending[start:start + room]:
                if max_bytes is not None and rows and used >= max_bytes:
                    break
                ev = row_event_json(r)
                used += len(ev)
                rows.append((r[ROW_STREAM], r[ROW_SEQ], r[ROW_SERVER_TIME], ev))
        return rows, offset + len(rows) < page.total + len(pending)
