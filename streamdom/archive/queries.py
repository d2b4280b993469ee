"""Reads of the archive (DuckDB over DuckLake), each at one snapshot; run in executor threads.

Every function takes `version`: the snapshot to read (None: the latest). The server reads the
version its flusher last committed, so a read never sees a flush half-way (see reads.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from streamdom import signals
from streamdom.archive import lake, layout
from streamdom.archive.lake import Location
from streamdom.useragent import browser_of, os_of

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


@dataclass
class SessionQuery:
    """A search of the session list (GET /api/sessions; README, "Searching sessions").

    Every text match is a literal, case-insensitive substring (no wildcards).
    """

    since: int = 0  # last activity at or after (ms, server clock)
    before: int | None = None  # and before; None: also every live session
    q: str | None = None  # id, any visited URL, user id, trait and metadata values, browser, os, clicked text
    user: str | None = None  # exact user id
    traits: list[tuple[str, str]] = field(default_factory=list)  # (key, value): all must hold
    url: str | None = None  # any visited URL contains
    clicked: str | None = None  # any clicked text contains
    has_errors: bool = False
    has_rage: bool = False
    has_dead: bool = False
    live: bool | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    limit: int = 100
    offset: int = 0
    ids: list[str] | None = None  # only these sessions


# The summary columns of the index (layout.INDEX_SCHEMA) that a search reads; rows of sessions
# not archived yet (or live without events) come in a table of the same columns plus `live`.
SEARCH_COLUMNS = ("session_id", "stream_id", "first_server_time", "last_server_time",
                  "event_count", "bytes", "url", "user_agent", "browser", "os", "user_id", "traits",
                  "metadata", "urls", "clicked", "errors", "warnings", "network_errors",
                  "rage_clicks", "dead_clicks")
EXTRA_SCHEMA = pa.schema([*(layout.INDEX_SCHEMA.field(c) for c in SEARCH_COLUMNS),
                          pa.field("live", pa.bool_())]).remove_metadata()


_SEP = "chr(31)"  # between the texts a search looks at: a match cannot span two of them


def _joined(*exprs: str) -> str:
    return f"concat_ws({_SEP}, {', '.join(exprs)})"


def _list_text(expr: str) -> str:
    return f"array_to_string({expr}, {_SEP})"


# Everything `q` looks at in one index row, in one lowered text (one pass per row).
_Q_TEXT = "lower(" + _joined(
    "url", "user_id", "browser", "os", _list_text("urls"), _list_text("clicked"),
    _list_text("json_extract_string(traits, '$.*')"),
    _list_text("json_extract_string(metadata, '$.*')")) + ")"


def json_pointer(key: str) -> str:
    """The JSON Pointer (RFC 6901) of a top-level key: no key can escape into a path."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


SUMMARY_COLUMNS = ("id", "live", "started_at", "last_event_at", "duration_ms", "event_count",
                   "bytes", "url", "user_agent", "browser", "os", "user_id", "traits", "metadata",
                   "tabs", "errors", "warnings", "network_errors", "rage_clicks", "dead_clicks")
# A session's summary from its index rows (and rows not archived yet): see SUMMARY_COLUMNS.
_SUMMARY = """
    session_id AS id, coalesce(bool_or(live), false) AS live,
    min(first_server_time) AS started_at, max(last_server_time) AS last_event_at,
    (max(last_server_time) - min(first_server_time))::BIGINT AS duration_ms,
    sum(event_count)::BIGINT AS event_count, sum(bytes)::BIGINT AS bytes,
    coalesce(arg_min(url, first_server_time) FILTER (WHERE url <> ''), '') AS url,
    coalesce(arg_min(user_agent, first_server_time) FILTER (WHERE user_agent <> ''), '') AS user_agent,
    arg_min(browser, first_server_time) FILTER (WHERE browser <> '') AS browser,
    arg_min(os, first_server_time) FILTER (WHERE os <> '') AS os,
    coalesce(arg_max(user_id, last_server_time) FILTER (WHERE user_id <> ''), '') AS user_id,
    list(traits ORDER BY last_server_time) FILTER (WHERE traits IS NOT NULL) AS traits,
    list(metadata ORDER BY last_server_time) FILTER (WHERE metadata IS NOT NULL) AS metadata,
    count(DISTINCT stream_id)::INTEGER AS tabs,
    coalesce(sum(errors), 0)::INTEGER AS errors, coalesce(sum(warnings), 0)::INTEGER AS warnings,
    coalesce(sum(network_errors), 0)::INTEGER AS network_errors,
    coalesce(sum(rage_clicks), 0)::INTEGER AS rage_clicks,
    coalesce(sum(dead_clicks), 0)::INTEGER AS dead_clicks"""


def search_sessions(con: duckdb.DuckDBPyConnection, query: SessionQuery, extra: pa.Table | None,
                    version: int | None = None) -> tuple[list[dict[str, object]], int]:
    """One page of the sessions matching `query` and their true total: live first, then by most
    recent activity (then id). `extra`: rows (EXTRA_SCHEMA) of what the archive does not hold yet.

    Two steps: the matches, ordered and counted, from only what the filters and the order need
    (cheap aggregates over every index row in the window); then the full summaries of the
    page's sessions alone.
    """
    if query.ids is not None and not query.ids:
        return [], 0
    has_extra = extra is not None and len(extra) > 0
    if has_extra:
        con.register("search_extra", extra)
    try:
        page, total = _matches(con, query, has_extra, version)
        if not page:
            return [], total
        found = {row[0]: row for row in con.execute(
            f"SELECT {_SUMMARY} FROM ({_rows_sql(page, has_extra, version)}) GROUP BY session_id",
            {"ids": page}).fetchall()}
    finally:
        if has_extra:
            con.unregister("search_extra")
    return [_summary(dict(zip(SUMMARY_COLUMNS, found[i], strict=True))) for i in page if i in found], total


def _rows_sql(ids: Sequence[str] | None, has_extra: bool, version: int | None,
              window: bool = False) -> str:
    """The index rows (and rows not archived yet) of these sessions, or of those active since
    $since (`window`), or all."""
    where = ""
    if ids is not None:
        where = " WHERE session_id IN (SELECT unnest($ids::VARCHAR[]))"
    elif window:
        # Found by the index rows of the window's days alone (DuckLake skips older files by
        # their statistics), plus the sessions the bus knows now.
        where = (f" WHERE (session_id IN (SELECT session_id FROM lake.sessions{_at(version)}"
                 " WHERE last_server_time >= $since)"
                 + (" OR session_id IN (SELECT session_id FROM search_extra))" if has_extra else ")"))
    sql = (f"SELECT {', '.join(SEARCH_COLUMNS)}, NULL::BOOLEAN AS live "
           f"FROM lake.sessions{_at(version)}{where}")
    if has_extra:
        sql += " UNION ALL BY NAME SELECT * FROM search_extra"
        if ids is not None:
            sql += " WHERE session_id IN (SELECT unnest($ids::VARCHAR[]))"
    return sql


def _matches(con: duckdb.DuckDBPyConnection, query: SessionQuery, has_extra: bool,
             version: int | None) -> tuple[list[str], int]:
    """The ids of the page's matches, in order, and the number of matches."""
    params: dict[str, object] = {"since": query.since}
    if query.ids is not None:
        params["ids"] = sorted(query.ids)
    aggs = ["coalesce(bool_or(live), false) AS live", "max(last_server_time) AS last_event_at"]
    conds = ["(last_event_at >= $since" + (" AND last_event_at < $before)" if query.before else ")")]
    if query.before:
        params["before"] = query.before
    else:
        conds[0] = f"({conds[0]} OR live)"

    def agg(expr: str, name: str, cond: str, **more: object) -> None:
        aggs.append(f"{expr} AS {name}")
        conds.append(cond)
        params.update(more)

    if query.q:
        agg(f"bool_or(contains({_Q_TEXT}, lower($q))) OR contains(lower(session_id), lower($q))",
            "hit_q", "hit_q", q=query.q)
    if query.url:
        agg(f"bool_or(contains(lower({_joined('url', _list_text('urls'))}), lower($url)))",
            "hit_url", "hit_url", url=query.url)
    if query.clicked:
        agg(f"bool_or(contains(lower({_list_text('clicked')}), lower($clicked)))",
            "hit_clicked", "hit_clicked", clicked=query.clicked)
    for i, (key, value) in enumerate(query.traits):
        agg(f"coalesce(bool_or(json_extract_string(traits, $tk{i}) = $tv{i}), false)", f"hit_t{i}",
            f"hit_t{i}", **{f"tk{i}": json_pointer(key), f"tv{i}": value})
    if query.user is not None:
        agg("arg_max(user_id, last_server_time) FILTER (WHERE user_id <> '')", "user_id",
            "user_id = $user", user=query.user)
    for flag, col in ((query.has_errors, "errors"), (query.has_rage, "rage_clicks"),
                      (query.has_dead, "dead_clicks")):
        if flag:
            agg(f"sum({col})", col, f"{col} > 0")
    if query.live is not None:
        conds.append("live" if query.live else "NOT live")
    if query.min_duration is not None or query.max_duration is not None:
        aggs.append("max(last_server_time) - min(first_server_time) AS duration_ms")
    if query.min_duration is not None:
        conds.append("duration_ms >= $min_d")
        params["min_d"] = query.min_duration
    if query.max_duration is not None:
        conds.append("duration_ms <= $max_d")
        params["max_d"] = query.max_duration
    rows = _rows_sql(query.ids, has_extra, version, window=query.ids is None and query.since > 0)
    matches = (f"SELECT session_id AS id, {', '.join(aggs)} FROM ({rows}) GROUP BY session_id "
               f"HAVING {' AND '.join(conds)}")
    found = con.execute(
        f"SELECT id, count(*) OVER () FROM ({matches}) ORDER BY live DESC, last_event_at DESC, id "
        "LIMIT $limit OFFSET $offset", {**params, "limit": query.limit, "offset": query.offset}).fetchall()
    if found:
        return [r[0] for r in found], int(found[0][1])
    return [], int(con.execute(f"SELECT count(*) FROM ({matches})", params).fetchone()[0])


def _summary(row: dict[str, object]) -> dict[str, object]:
    for key in ("traits", "metadata"):
        merged: dict[str, object] = {}
        for text in row[key] or ():  # type: ignore[attr-defined]
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                merged.update(value)
        row[key] = dict(list(merged.items())[:signals.MAX_KEYS])
    ua = str(row["user_agent"])
    row["browser"] = row["browser"] or browser_of(ua)
    row["os"] = row["os"] or os_of(ua)
    return row


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
