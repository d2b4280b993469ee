"""DuckDB queries over the Parquet dataset; every function runs in an executor thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from streamdom.archive.layout import DataFile

_local = threading.local()

# Re-assembles each stored row into the rrweb event exactly as recorded.
EVENT_SQL = (
    "'{\"type\":' || type || ',\"data\":' || data || ',\"timestamp\":' || timestamp"
    " || coalesce(',' || substr(extra, 2, length(extra) - 2), '') || '}'"
)


def cursor() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection (in-memory; it only reads Parquet)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(":memory:", config={"threads": 1})
        _local.con = con
    return con


def _paths(files: Sequence[DataFile], attr: str) -> list[str]:
    return [str(getattr(f, attr)) for f in files]


def list_sessions(files: Sequence[DataFile], since: int, before: int | None, q: str | None,
                  limit: int, ids: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Session summaries from the index files, by most recent activity, active in [since, before).

    With `ids`, only those sessions.
    """
    if not files or ids is not None and not ids:
        return []
    sql = f"""
        SELECT session_id AS id, min(first_server_time) AS started_at,
               max(last_server_time) AS last_event_at, sum(event_count)::BIGINT AS event_count,
               sum(bytes)::BIGINT AS bytes, arg_min(url, first_server_time) AS url,
               arg_min(user_agent, first_server_time) AS user_agent
        FROM read_parquet(?)
        {"WHERE session_id IN (SELECT unnest(?))" if ids is not None else ""}
        GROUP BY session_id
        HAVING max(last_server_time) >= ? {"AND max(last_server_time) < ?" if before else ""}
        {"AND (session_id ILIKE ? OR any_value(url) ILIKE ?)" if q else ""}
        ORDER BY last_event_at DESC
        LIMIT ?"""
    params: list[object] = [_paths(files, "index")]
    if ids is not None:
        params.append(sorted(ids))
    params.append(since)
    if before:
        params.append(before)
    if q:
        params += [f"%{q}%", f"%{q}%"]
    params.append(limit)
    rel = cursor().execute(sql, params)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]


@dataclass
class ArchivedSession:
    """What the archive holds of one session: the files, its summary, each stream's highest seq."""

    files: list[DataFile]
    summary: dict[str, object]
    stream_highs: dict[str, int]  # stream id -> highest archived seq


def session_files(files: Sequence[DataFile], session_id: str) -> ArchivedSession | None:
    """The data files holding a session (found through the index) and its archived summary."""
    if not files:
        return None
    rows = cursor().execute(
        """SELECT filename, stream_id, min(first_server_time), max(last_server_time),
                  sum(event_count)::BIGINT, sum(bytes)::BIGINT, arg_min(url, first_server_time),
                  arg_min(user_agent, first_server_time), max(max_seq)
           FROM read_parquet(?, filename=true) WHERE session_id = ?
           GROUP BY filename, stream_id""",
        [_paths(files, "index"), session_id]).fetchall()
    if not rows:
        return None
    by_index = {str(f.index): f for f in files}
    holding = sorted({r[0] for r in rows})
    first = min(rows, key=lambda r: r[2])
    highs: dict[str, int] = {}
    for r in rows:
        highs[r[1]] = max(highs.get(r[1], 0), int(r[8]))
    summary = {
        "id": session_id, "started_at": first[2], "last_event_at": max(r[3] for r in rows),
        "event_count": sum(r[4] for r in rows), "bytes": sum(r[5] for r in rows),
        "url": first[6], "user_agent": first[7],
    }
    return ArchivedSession([by_index[f] for f in holding if f in by_index], summary, highs)


def session_events(files: Sequence[DataFile], session_id: str, offset: int,
                   limit: int | None) -> list[tuple[str, int, int, str]]:
    """(stream_id, seq, server_time, event JSON) of a session, in order, one page."""
    if not files:
        return []
    sql = f"""SELECT stream_id, seq, server_time, {EVENT_SQL} FROM read_parquet(?)
              WHERE session_id = ? ORDER BY server_time, stream_id, seq
              {"LIMIT ?" if limit is not None else ""} OFFSET ?"""
    params: list[object] = [_paths(files, "events"), session_id]
    if limit is not None:
        params.append(limit)
    params.append(offset)
    return cursor().execute(sql, params).fetchall()


def stream_high_seqs(files: Sequence[DataFile], keys: Sequence[tuple[str, str]] | None = None
                     ) -> dict[tuple[str, str], int]:
    """Highest archived seq per (session, stream), optionally only for some sessions."""
    if not files:
        return {}
    sql = "SELECT session_id, stream_id, max(max_seq) FROM read_parquet(?)"
    params: list[object] = [_paths(files, "index")]
    if keys is not None:
        sids = sorted({k[0] for k in keys})
        if not sids:
            return {}
        sql += " WHERE session_id IN (SELECT unnest(?))"
        params.append(sids)
    sql += " GROUP BY ALL"
    return {(a, b): int(c) for a, b, c in cursor().execute(sql, params).fetchall()}
