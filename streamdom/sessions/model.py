"""The one read model of sessions: `list`, `get` and `events`, over the bus and the archive.

A session's summary is put together here and nowhere else, from three sources:
- the archive (Parquet, through its index): everything flushed;
- the bus's events not archived yet (figures, or rows);
- the bus's presence: whether it is live now, since when, its page URL.
/api/sessions, /api/sessions/<id>, the pages and the /updates pushes all read it, so they agree.
"""

from __future__ import annotations

from collections.abc import Collection

from streamdom.archive.reads import ArchiveReader, EventRow
from streamdom.bus.base import Bus, PendingSummary, Presence
from streamdom.records import ROW_SEQ, ROW_SERVER_TIME, ROW_STREAM, row_event_json
from streamdom.wire import now_ms

DAY_MS = 86_400_000

Summary = dict[str, object]  # id, live, started_at, last_event_at, event_count, bytes, url, user_agent


def cutoff_24h() -> int:
    """Server time 24 h ago: the default window of the session list."""
    return now_ms() - DAY_MS


def summary(session_id: str, archived: Summary | None, pending: PendingSummary | None,
            presence: Presence | None) -> Summary:
    """A session's summary from what the archive, the bus's unarchived events and presence say."""
    starts: list[int] = []
    lasts: list[int] = []
    count = size = 0
    url = user_agent = ""
    if archived is not None:
        starts.append(int(archived["started_at"]))  # type: ignore[call-overload]
        lasts.append(int(archived["last_event_at"]))  # type: ignore[call-overload]
        count += int(archived["event_count"])  # type: ignore[call-overload]
        size += int(archived["bytes"])  # type: ignore[call-overload]
        url, user_agent = str(archived.get("url") or ""), str(archived.get("user_agent") or "")
    if pending is not None:
        starts.append(pending.started_at)
        lasts.append(pending.last_event_at)
        count += pending.event_count
        size += pending.bytes
        url, user_agent = url or pending.url, user_agent or pending.user_agent
    if presence is not None:
        starts.append(presence.started_at)
        lasts.append(presence.last_event_at)
        url, user_agent = url or presence.url, user_agent or presence.user_agent
    return {
        "id": session_id, "live": bool(presence is not None and presence.live),
        "started_at": min(starts), "last_event_at": max(lasts), "event_count": count,
        "bytes": size, "url": url, "user_agent": user_agent,
    }


def _matches(s: Summary, q: str | None) -> bool:
    if not q:
        return True
    q = q.lower()
    return q in str(s["id"]).lower() or q in str(s["url"]).lower()


def list_order(s: Summary) -> tuple[bool, int]:
    """Live sessions first, then by most recent activity."""
    return not s["live"], -int(s["last_event_at"])  # type: ignore[call-overload]


class Sessions:
    """Every session this server knows, live or archived, as one list."""

    def __init__(self, bus: Bus, archive: ArchiveReader) -> None:
        self.bus = bus
        self.archive = archive

    async def list(self, since: int, before: int | None, q: str | None,
                   limit: int) -> list[Summary]:
        """Sessions active in [since, before) (and, without `before`, every live one), whose id
        or page URL contains `q`, live first, then by most recent activity."""
        # The bus's snapshot first, the archive's right after: see Bus.unarchived_summaries.
        pending = await self.bus.unarchived_summaries()
        archived = {str(a["id"]): a for a in await self.archive.list_sessions(since, before, q, limit)}
        presence = self.bus.presence()
        ids = set(archived) | set(pending)
        if before is None:
            ids |= set(presence)
        out = []
        for sid in ids:
            s = summary(sid, archived.get(sid), pending.get(sid), presence.get(sid))
            in_window = int(s["last_event_at"]) >= since and (  # type: ignore[call-overload]
                before is None or int(s["last_event_at"]) < before)  # type: ignore[call-overload]
            if (in_window or s["live"] and before is None) and _matches(s, q):
                out.append(s)
        return sorted(out, key=list_order)[:limit]

    async def get(self, session_id: str) -> Summary | None:
        """One session's summary, or None if nothing anywhere knows it."""
        return (await self.summaries([session_id])).get(session_id)

    async def summaries(self, ids: Collection[str]) -> dict[str, Summary]:
        """The summaries of these sessions (those known anywhere), by id."""
        pending = await self.bus.unarchived_summaries(ids)
        archived = {str(a["id"]): a for a in await self.archive.list_sessions(
            0, None, None, len(ids), ids)}
        presence = self.bus.presence()
        return {sid: summary(sid, archived.get(sid), pending.get(sid), presence.get(sid))
                for sid in ids if sid in archived or sid in pending or sid in presence}

    async def events(self, session_id: str, offset: int, limit: int | None
                     ) -> tuple[list[EventRow], bool]:
        """One page of a session's events in order (archived, then not yet archived), and
        whether more follow."""
        # Unarchived rows first, then the archive: whatever a flush moved in between is in
        # both, and only rows above the archive's highest seq of their stream are kept.
        pending = await self.bus.unarchived(session_id)
        page = await self.archive.events(session_id, offset, limit)
        highs = page.stream_highs
        pending = sorted((r for r in pending if r[ROW_SEQ] > highs.get(r[ROW_STREAM], 0)),
                         key=lambda r: (r[ROW_SERVER_TIME], r[ROW_STREAM], r[ROW_SEQ]))
        rows = page.rows
        start = max(0, offset - page.total)
        room = None if limit is None else limit - len(rows)
        if room is None or room > 0:
            take = pending[start:] if room is None else pending[start:start + room]
            rows += [(r[ROW_STREAM], r[ROW_SEQ], r[ROW_SERVER_TIME], row_event_json(r)) for r in take]
        return rows, offset + len(rows) < page.total + len(pending)
