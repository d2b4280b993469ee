"""Reads of the archive (DuckDB over DuckLake), each at one snapshot; run in executor threads.

Every function takes `version`: the snapshot to read (None: the latest). The server reads the
version its flusher last committed, so a read never sees a flush half-way (see reads.py).

A session's page and the hello's high seqs scan the snapshot's Parquet files themselves: a
DuckLake scan looks its table's files and their statistics up in the catalog on every query
(~8 of a 12 ms hello lookup), so each connection asks the catalog once per snapshot for the
file list and keeps it (`snapshot_files`; figures in docs/ARCHITECTURE.md). The session
search reads the snapshot's per-session table, kept in memory and advanced flush by flush
(summaries.py).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset  # noqa: F401 - imported by DuckDB at a first register (20-50 ms): not in a search

from streamdom import signals
from streamdom.archive import lake, prepared, summaries
from streamdom.archive.lake import Location
from streamdom.useragent import browser_of, os_of

_local = threading.local()
SNAPSHOTS_KEPT = 4  # file lists per connection: the current snapshot and a few older pins
_DAY = re.compile(r"/day=(\d{4}-\d{2}-\d{2})/")


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


# Rows of sessions not archived yet (or live without events): the index's summary columns
# plus `live` (summaries.py regroups them).
SEARCH_COLUMNS = summaries.ROW_COLUMNS
EXTRA_SCHEMA = summaries.ROWS_SCHEMA


def json_pointer(key: str) -> str:
    """The JSON Pointer (RFC 6901) of a top-level key: no key can escape into a path."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


SUMMARY_COLUMNS = ("id", "live", "started_at", "last_event_at", "duration_ms", "event_count",
                   "bytes", "url", "user_agent", "browser", "os", "user_id", "traits", "metadata",
                   "tabs", "errors", "warnings", "network_errors", "rage_clicks", "dead_clicks")
# A session's summary (SUMMARY_COLUMNS) from its partial row (summaries.py).
_SUMMARY = """id, coalesce(live, false), started_at, last_event_at,
    (last_event_at - started_at)::BIGINT, event_count, bytes, coalesce(url, ''),
    coalesce(user_agent, ''), browser, os, coalesce(user_id, ''),
    list_transform(traits, lambda t: t.json), list_transform(metadata, lambda t: t.json),
    coalesce(len(streams), 0)::INTEGER, coalesce(errors, 0), coalesce(warnings, 0),
    coalesce(network_errors, 0), coalesce(rage_clicks, 0), coalesce(dead_clicks, 0)"""


def search_sessions(con: duckdb.DuckDBPyConnection, query: SessionQuery, extra: pa.Table | None,
                    version: int | None = None, loc: Location | None = None
                    ) -> tuple[list[dict[str, object]], int]:
    """One page of the sessions matching `query` and their true total: live first, then by most
    recent activity (then id). `extra`: rows (EXTRA_SCHEMA) of what the archive does not hold
    yet; `loc`: the archive `con` reads, whose per-session tables its readers share (summaries.py).

    The archive's sessions come one row each from the snapshot's summaries table; the few that
    also have rows in `extra` are regrouped with them. Then two steps: the matches, ordered and
    counted from the columns the filters need; then the page's summaries, from its rows alone
    (taken by position: a join would read every column of every session).
    """
    if query.ids is not None and not query.ids:
        return [], 0
    v = latest_version(con) if version is None else int(version)
    # A few sessions by id (a page's summary, an /updates push) never wait for a whole build.
    archived = summaries.at(con, loc, v, build=query.ids is None)
    if archived is None:
        archived = summaries.of_ids(con, snapshot_files(con, v).source("sessions"), query.ids)  # type: ignore[arg-type]
    con.register("search_archived", archived)
    try:
        regrouped, touched = _with_extra(con, archived, extra)
        con.register("search_regrouped", regrouped)
        try:
            # The archived rows of the regrouped sessions give way to their regrouped rows.
            source = "(SELECT * FROM search_archived WHERE NOT coalesce(stale, false)"
            params: dict[str, object] = {}
            if touched:
                source += " AND coalesce(pos, -1) NOT IN (SELECT unnest($touched::BIGINT[]))"
                params = {"touched": touched}
            source += ")"
            if len(regrouped):
                source = f"(SELECT * FROM {source} UNION ALL BY NAME SELECT * FROM search_regrouped)"
            page, total = _matches(con, query, source, params)
            if not page:
                return [], total
            rows = pa.concat_tables([
                summaries.take(archived, [pos for _, pos in page if pos is not None]),
                regrouped.filter(pc.is_in(regrouped["id"], pa.array([i for i, pos in page if pos is None],
                                                                   pa.string())))])
            found = {row[0]: row for row in prepared.execute(
                con, "search_page_summaries", f"SELECT {_SUMMARY} FROM search_page", {"search_page": rows}).fetchall()}
        finally:
            con.unregister("search_regrouped")
    finally:
        con.unregister("search_archived")
    return [_summary(dict(zip(SUMMARY_COLUMNS, found[i], strict=True))) for i, _ in page if i in found], total


def keep_summaries(con: duckdb.DuckDBPyConnection, version: int | None, loc: Location) -> None:
    """Bring the archive's kept per-session table to `version` (None: the latest) ahead of the
    searches: advanced from the one kept, else built."""
    summaries.at(con, loc, latest_version(con) if version is None else int(version))


def warm_up(con: duckdb.DuckDBPyConnection, version: int | None, loc: Location, build: bool) -> None:
    """At a server's start, in a reader thread: with `build`, build the kept table; then search
    once on this thread's connection (a connection's first search cost 10-15 ms more than the
    next ones, measured): a list, or without `build` a search by id, which never waits for a
    build (this thread stays free for the queries of the start meanwhile)."""
    v = latest_version(con) if version is None else int(version)
    if build:
        summaries.at(con, loc, v)
    search_sessions(con, SessionQuery(limit=1, ids=None if build else [""]), None, v, loc)


def _with_extra(con: duckdb.DuckDBPyConnection, archived: pa.Table, extra: pa.Table | None
                ) -> tuple[pa.Table, list[int]]:
    """The partial rows of the sessions in `extra`, each regrouped with its archived row, and
    the positions of those archived rows."""
    if extra is None or not len(extra):
        return archived.schema.empty_table(), []
    touched = pc.indices_nonzero(pc.and_(pc.is_in(archived["id"], value_set=pc.unique(extra["session_id"])),
                                         pc.invert(archived["stale"]))).to_pylist()
    partial = summaries.regroup(con, summaries.take(archived, touched).drop_columns(["stale", "pos"]), extra)
    n = len(partial)
    return (partial.append_column("stale", pa.repeat(pa.scalar(False), n))
            .append_column("pos", pa.nulls(n, pa.int64())).cast(archived.schema), touched)


def _matches(con: duckdb.DuckDBPyConnection, query: SessionQuery, source: str,
             params: dict[str, object]) -> tuple[list[tuple[str, int | None]], int]:
    """The page's matches in `source` (with `params`) in order, each (id, its position in the
    archived table, None if regrouped with rows not archived yet), and the number of matches."""
    # Every condition tests an expression of the columns (coalesce), never a bare column: DuckDB
    # hands filters on a registered Arrow table's bare columns to pyarrow's dataset scanner,
    # which took 30-90 ms a query at 70k sessions (measured), against 2-6 ms scanning itself.
    params = {**params, "since": query.since}
    conds = ["(coalesce(last_event_at, 0) >= $since"
             + (" AND coalesce(last_event_at, 0) < $before)" if query.before else ")")]
    if query.before:
        params["before"] = query.before
    else:
        conds[0] = f"({conds[0]} OR coalesce(live, false))"

    def cond(sql: str, **more: object) -> None:
        conds.append(sql)
        params.update(more)

    if query.ids is not None:
        cond("coalesce(id, '') IN (SELECT unnest($ids::VARCHAR[]))", ids=sorted(query.ids))
    if query.q:
        cond("(contains(q_text, lower($q)) OR contains(lower(id), lower($q)))", q=query.q)
    if query.url:
        cond("contains(url_text, lower($url))", url=query.url)
    if query.clicked:
        cond("contains(clicked_text, lower($clicked))", clicked=query.clicked)
    for i, (key, value) in enumerate(query.traits):
        cond(f"coalesce(list_bool_or(list_transform(traits, lambda t: json_extract_string(t.json, $tk{i}) = $tv{i})), false)",
             **{f"tk{i}": json_pointer(key), f"tv{i}": value})
    if query.user is not None:
        cond("coalesce(user_id, '') = $user", user=query.user)
    for flag, col in ((query.has_errors, "errors"), (query.has_rage, "rage_clicks"),
                      (query.has_dead, "dead_clicks")):
        if flag:
            conds.append(f"coalesce({col}, 0) > 0")
    if query.live is not None:
        conds.append("coalesce(live, false)" if query.live else "NOT coalesce(live, false)")
    if query.min_duration is not None:
        cond("last_event_at - started_at >= $min_d", min_d=query.min_duration)
    if query.max_duration is not None:
        cond("last_event_at - started_at <= $max_d", max_d=query.max_duration)
    matches = (f"SELECT id, pos, coalesce(live, false) AS live, last_event_at FROM {source} "
               f"WHERE {' AND '.join(conds)}")
    found = con.execute(
        f"SELECT id, pos, count(*) OVER () FROM ({matches}) ORDER BY live DESC, last_event_at DESC, id "
        "LIMIT $limit OFFSET $offset", {**params, "limit": query.limit, "offset": query.offset}).fetchall()
    if found:
        return [(r[0], r[1]) for r in found], int(found[0][2])
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
    """A page of a session's archived events, and what a reader needs to add unarchived ones.

    A session's summary is the search's (search_sessions, by id: summaries.py holds its one
    rule); a page only needs these figures of the index.
    """

    rows: list[EventRow]
    total: int  # archived events of the session (0: the archive has none)
    stream_highs: dict[str, int]  # stream id -> highest archived seq


def session_page(con: duckdb.DuckDBPyConnection, session_id: str, offset: int, limit: int | None,
                 version: int | None = None, max_bytes: int | None = None) -> ArchivedPage:
    """One page of a session's archived events, in order, with their count and highest seqs
    (from the index); with `max_bytes`, the page ends at the first event that would take it
    past that many bytes (it always holds one event)."""
    snap = snapshot_files(con, version)
    found = con.execute(
        f"""SELECT stream_id, sum(event_count)::BIGINT, max(max_seq), list(DISTINCT day::VARCHAR)
            FROM {snap.source("sessions")} WHERE session_id = ? GROUP BY stream_id""",
        [session_id]).fetchall()
    if not found:
        return ArchivedPage([], 0, {})
    page = ArchivedPage([], sum(int(r[1]) for r in found), {r[0]: int(r[2]) for r in found})
    if offset >= page.total or limit == 0:
        return page
    days = sorted({d for r in found for d in r[3]})
    # Only the session's days: whole partitions skipped before any file is opened.
    scan = f"""FROM {snap.source("events", days)}
               WHERE session_id = ? AND day IN ({", ".join("?::DATE" for _ in days)})"""
    order = "ORDER BY server_time, stream_id, seq"
    window = f"{'LIMIT ?' if limit is not None else ''} OFFSET ?"
    params: list[object] = [session_id, *days, *([] if limit is None else [limit]), offset]
    if max_bytes is None:
        page.rows = con.execute(f"SELECT stream_id, seq, server_time, {EVENT_SQL} {scan} {order} {window}",
                                params).fetchall()
        return page
    # Byte-bounded: find the page's first and last keys from the events' sizes alone, then
    # fetch that key range. Sorting with OFFSET holds every row up to the page's end, so it
    # must hold small rows (keys and sizes), never the events themselves.
    keys = con.execute(f"SELECT server_time, stream_id, seq, strlen({EVENT_SQL}) {scan} {order} {window}",
                       params).fetchall()
    used, take = 0, 0
    for *_, size in keys:
        if take and used >= max_bytes:
            break
        used += size
        take += 1
    if not take:
        return page
    (t0, s0, q0, _), (t1, s1, q1, _) = keys[0], keys[take - 1]
    page.rows = con.execute(
        f"""SELECT stream_id, seq, server_time, {EVENT_SQL} {scan}
              AND (server_time > ? OR (server_time = ? AND (stream_id > ? OR (stream_id = ? AND seq >= ?))))
              AND (server_time < ? OR (server_time = ? AND (stream_id < ? OR (stream_id = ? AND seq <= ?))))
            {order}""", [session_id, *days, t0, t0, s0, s0, q0, t1, t1, s1, s1, q1]).fetchall()
    return page


def stream_high_seqs(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]] | None = None,
                     version: int | None = None) -> dict[tuple[str, str], int]:
    """Highest archived seq per (session, stream), optionally only for some sessions."""
    snap = snapshot_files(con, version)
    sql = f"SELECT session_id, stream_id, max(max_seq) FROM {snap.source('sessions')}"
    params: list[object] = []
    if keys is not None:
        sids = sorted({k[0] for k in keys})
        if not sids:
            return {}
        # Literal values, not a join: the scan skips row groups by their session_id statistics.
        sql += f" WHERE session_id IN ({', '.join('?' for _ in sids)})"
        params += sids
    sql += " GROUP BY ALL"
    return {(a, b): int(c) for a, b, c in con.execute(sql, params).fetchall()}


# --- a snapshot's files --------------------------------------------------------------------------
@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a table in a snapshot."""

    path: str
    day: str | None  # its day=YYYY-MM-DD partition
    partial_max: int | None  # a merged file: the newest snapshot its rows come from


@dataclass(frozen=True)
class SnapshotFiles:
    """What a read at one snapshot scans: each table's data files, or DuckLake's own scan."""

    version: int
    tables: dict[str, list[DataFile]] | None  # None: read through DuckLake (see snapshot_files)

    def source(self, table: str, days: Sequence[str] | None = None) -> str:
        """A FROM item with the table's rows at this snapshot (only files of `days` if given).

        Columns are matched by name (union_by_name), so files written before a column was added
        read NULL for it, as through DuckLake. A merged file also holds rows of snapshots after
        older ones it replaced, each row tagged with its snapshot: those rows are left out.
        """
        if self.tables is None:
            return f"lake.{table}{_at(self.version)}"
        files = [f for f in self.tables[table] if days is None or f.day is None or f.day in days]
        whole = [f.path for f in files if f.partial_max is None or f.partial_max <= self.version]
        partial = [f.path for f in files if f.path not in whole]
        parts = [f"SELECT * FROM read_parquet({_sql_list(whole)}, union_by_name = true, "
                 "hive_partitioning = false)"] if whole else []
        if partial:
            parts.append(f"SELECT * EXCLUDE (_ducklake_internal_snapshot_id) FROM read_parquet("
                         f"{_sql_list(partial)}, union_by_name = true, hive_partitioning = false) "
                         f"WHERE _ducklake_internal_snapshot_id <= {self.version}")
        if not parts:  # no file at all: the table's columns, no rows
            return f"(SELECT * FROM lake.{table}{_at(self.version)} LIMIT 0)"
        return "(" + " UNION ALL BY NAME ".join(parts) + ")"


def latest_version(con: duckdb.DuckDBPyConnection) -> int:
    """The archive's latest snapshot id."""
    # From the catalog's table (DuckLake's spec): ~1.5 ms, where current_snapshot()
    # (DuckLake's transaction set-up) took ~10 ms on a loaded machine.
    return int(con.execute(f"SELECT max(snapshot_id) FROM {lake.METADATA}.ducklake_snapshot").fetchone()[0])


def snapshot_files(con: duckdb.DuckDBPyConnection, version: int | None) -> SnapshotFiles:
    """The files of `version` (None: the latest), from this thread's cache or the catalog.

    DuckLake's scan is kept for snapshots with delete files (rows deleted inside a file, which
    only DuckLake applies; retention drops whole files) and for inlined rows (off: the README's
    globs could not see them either).
    """
    v = latest_version(con) if version is None else int(version)
    per_con: WeakKeyDictionary[duckdb.DuckDBPyConnection, OrderedDict[int, SnapshotFiles]] = \
        _local.__dict__.setdefault("snapshots", WeakKeyDictionary())
    cache = per_con.setdefault(con, OrderedDict())  # a connection is one archive
    snap = cache.get(v)
    if snap is None:
        snap = cache[v] = _list_files(con, v)
        while len(cache) > SNAPSHOTS_KEPT:
            cache.popitem(last=False)
    cache.move_to_end(v)
    return snap


def _list_files(con: duckdb.DuckDBPyConnection, version: int) -> SnapshotFiles:
    # partial_max is in DuckLake's catalog table ducklake_data_file (its published spec), keyed
    # by the path relative to the table's folder; ducklake_list_files gives absolute paths.
    partial = dict(con.execute(
        f"""SELECT f.path, f.partial_max FROM {lake.METADATA}.ducklake_data_file f
            JOIN {lake.METADATA}.ducklake_table t ON t.table_id = f.table_id
            WHERE f.partial_max IS NOT NULL AND f.begin_snapshot <= ?
              AND (f.end_snapshot IS NULL OR f.end_snapshot > ?)
              AND t.begin_snapshot <= ? AND (t.end_snapshot IS NULL OR t.end_snapshot > ?)""",
        [version] * 4).fetchall())
    tables: dict[str, list[DataFile]] = {}
    for table in ("events", "sessions"):
        files = []
        for path, delete_file in con.execute(
                "SELECT data_file, delete_file FROM ducklake_list_files(?, ?, snapshot_version => ?)",
                [lake.LAKE, table, version]).fetchall():
            if delete_file is not None:
                return SnapshotFiles(version, None)
            day = _DAY.search(path)
            rel = path.rsplit(f"/{table}/", 1)[-1]
            files.append(DataFile(path, day.group(1) if day else None, partial.get(rel)))
        tables[table] = files
    # The rows themselves, not the option: a writer may have inlined rows while the option said 0
    # (see lake.connect), and inlined rows may have been flushed to files since.
    return SnapshotFiles(version, None if lake.inlined_rows(con, version) else tables)


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"
