"""Reads of the archive (DuckDB over DuckLake), each at one snapshot; run in executor threads.

Every function takes `version`: the snapshot to read (None: the latest). The server reads the
version its flusher last committed, so a read never sees a flush half-way (see reads.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from streamdom.archive import lake
from streamdom.archive.lake import Location

_local = threading.local()


def cursor(loc: Location) -> duckdb.DuckDBPyConnection:
    """This thread's connection to the archive (DuckDB connections are per thread).

    Not attached read-only: a cluster node may ask before any archiver has created the
    archive, and `connect` creates it then. Nothing here writes.
    """
    cons: dict[Location, duckdb.DuckDBPyConnection] = _local.__dict__.setdefault("cons", {})
    con = cons.get(loc)
    if con is None:
        con = cons[loc] = lake.connect(loc)
    return con


def _at(version: int | None) -> str:
    return "" if version is None else f" AT (VERSION => {int(version)})"


def list_sessions(con: duckdb.DuckDBPyConnection, since: int, before: int | None, q: str | None,
                  limit: int, ids: Sequence[str] | None = None, version: int | None = None
                  ) -> list[dict[str, object]]:
    """Session summaries from the index, by most recent activity, active in [since, before).

    With `ids`, only those sessions.
    """
    if ids is not None and not ids:
        return []
    sql = f"""
        SELECT session_id AS id, min(first_server_time) AS started_at,
               max(last_server_time) AS last_event_at, sum(event_count)::BIGINT AS event_count,
               sum(bytes)::BIGINT AS bytes, arg_min(url, first_server_time) AS url,
               arg_min(user_agent, first_server_time) AS user_agent
        FROM lake.sessions{_at(version)}
        {"WHERE session_id IN (SELECT unnest(?::VARCHAR[]))" if ids is not None else ""}
        GROUP BY session_id
        HAVING max(last_server_time) >= ? {"AND max(last_server_time) < ?" if before else ""}
        {"AND (session_id ILIKE ? OR any_value(url) ILIKE ?)" if q else ""}
        ORDER BY last_event_at DESC
        LIMIT ?"""
    params: list[object] = [] if ids is None else [sorted(ids)]
    params.append(since)
    if before:
        params.append(before)
    if q:
        params += [f"%{q}%", f"%{q}%"]
    params.append(limit)
    rel = con.execute(sql, params)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]


# Re-assembles each stored row into the rrweb event exactly as recorded.
EVENT_SQL = (
    "'{\"type\":' || type || ',\"data\":' || data || ',\"timestamp\":' || timestamp"
    " || coalesce(',' || substr(extra, 2, length(extra) - 2), '') || '}'"
)
EventRow = tuple[str, int, int, str]  # stream id, seq, server time, the event's JSON


@dataclass
class ArchivedPage:
    """A page of a session's archived events, and what a reader needs to add unarchived ones."""

    rows: list[EventRow]
    summary: dict[str, object] | None  # None: the archive has none of its events
    stream_highs: dict[str, int]  # stream id -> highest archived seq

    @property
    def total(self) -> int:
        """Archived events of the session."""
        return int(self.summary["event_count"]) if self.summary else 0  # type: ignore[call-overload]


def session_page(con: duckdb.DuckDBPyConnection, session_id: str, offset: int, limit: int | None,
                 version: int | None = None) -> ArchivedPage:
    """A session's summary (from the index) and one page of its events, in order."""
    at = _at(version)
    found = con.execute(
        f"""SELECT stream_id, min(first_server_time), max(last_server_time), sum(event_count)::BIGINT,
                   sum(bytes)::BIGINT, arg_min(url, first_server_time),
                   arg_min(user_agent, first_server_time), max(max_seq), list(DISTINCT day::VARCHAR)
            FROM lake.sessions{at} WHERE session_id = ? GROUP BY stream_id""", [session_id]).fetchall()
    if not found:
        return ArchivedPage([], None, {})
    first = min(found, key=lambda r: r[1])
    summary = {"id": session_id, "started_at": first[1], "last_event_at": max(r[2] for r in found),
               "event_count": sum(r[3] for r in found), "bytes": sum(r[4] for r in found),
               "url": first[5], "user_agent": first[6]}
    page = ArchivedPage([], summary, {r[0]: int(r[7]) for r in found})
    if offset >= page.total or limit == 0:
        return page
    days = sorted({d for r in found for d in r[8]})
    # Literal days, so DuckLake prunes whole partitions before it opens any file.
    sql = f"""SELECT stream_id, seq, server_time, {EVENT_SQL} FROM lake.events{at}
              WHERE session_id = ? AND day IN ({", ".join("?::DATE" for _ in days)})
              ORDER BY server_time, stream_id, seq
              {"LIMIT ?" if limit is not None else ""} OFFSET ?"""
    params: list[object] = [session_id, *days]
    if limit is not None:
        params.append(limit)
    params.append(offset)
    page.rows = con.execute(sql, params).fetchall()
    return page


def stream_high_seqs(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]] | None = None,
                     version: int | None = None) -> dict[tuple[str, str], int]:
    """Highest archived seq per (session, stream), optionally only for some sessions."""
    sql = f"SELECT session_id, stream_id, max(max_seq) FROM lake.sessions{_at(version)}"
    params: list[object] = []
    if keys is not None:
        sids = sorted({k[0] for k in keys})
        if not sids:
            return {}
        sql += " WHERE session_id IN (SELECT unnest(?::VARCHAR[]))"
        params.append(sids)
    sql += " GROUP BY ALL"
    return {(a, b): int(c) for a, b, c in con.execute(sql, params).fetchall()}
