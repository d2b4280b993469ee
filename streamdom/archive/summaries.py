"""The archive's sessions at one snapshot, one row each, in memory: what the session search reads.

The index has a row per (session, stream, run of seqs) per commit, so every search used to
group it by session (and join each session's texts) again: ~70 ms for the first page of the
list at 70k sessions, 200-280 ms for free text. This table is that grouping done once per
snapshot and kept (one per archive, shared by the reader threads). A snapshot only ever adds
index rows (a flush, an archiver's commit) or rewrites files without changing rows (a merge),
so the next snapshot's table is this one with the sessions of the added rows regrouped
(DuckLake's `ducklake_table_insertions`), which reads only what the flush added. Anything else
between the two (retention's deletes, a schema change, a snapshot expired in between) rebuilds
it from the whole index.

Each row is a *partial* summary: combining partials (PARTIAL_COMBINE) gives the partial of
their union, and an index row (or a row of what the archive does not hold yet) is itself the
partial of one row (ROW_PARTIAL). So the snapshot's rows, the added rows and the bus's rows go
through the same two expressions, and a session in several of them gets exactly the figures
one grouping of all its rows would give.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from streamdom.archive import lake, layout, prepared
from streamdom.archive.lake import Location

# The index columns a partial is made of (layout.INDEX_SCHEMA), plus `live`: the rows the
# search regroups (what the archive does not hold yet, or what a commit added).
ROW_COLUMNS = ("session_id", "stream_id", "first_server_time", "last_server_time",
               "event_count", "bytes", "url", "user_agent", "browser", "os", "user_id", "traits",
               "metadata", "urls", "clicked", "errors", "warnings", "network_errors",
               "rage_clicks", "dead_clicks")
ROWS_SCHEMA = pa.schema([*(layout.INDEX_SCHEMA.field(c).with_nullable(True) for c in ROW_COLUMNS),
                         pa.field("live", pa.bool_())]).remove_metadata()
VERSIONS_KEPT = 2  # tables per archive: the latest and the one before (a read that began before a flush)
MAX_CHUNKS = 64
_SEP = "chr(31)"  # between the texts a search looks at: a match cannot span two of them


def _joined(*exprs: str) -> str:
    return f"concat_ws({_SEP}, {', '.join(exprs)})"


def _list_text(expr: str) -> str:
    return f"array_to_string({expr}, {_SEP})"


def _first(col: str, at: str) -> str:
    # A value with the time that decides between rows (earliest first / latest last wins).
    return f"CASE WHEN {col} <> '' THEN {col} END AS {col}, {at} AS {col}_at"


# One index row (or bus row, with `live`) as the partial summary of its session.
ROW_PARTIAL = f"""session_id AS id, live, first_server_time AS started_at,
    last_server_time AS last_event_at, event_count, bytes,
    {_first('url', 'first_server_time')}, {_first('user_agent', 'first_server_time')},
    {_first('browser', 'first_server_time')}, {_first('os', 'first_server_time')},
    {_first('user_id', 'last_server_time')},
    CASE WHEN traits IS NOT NULL THEN [{{'at': last_server_time, 'json': traits}}] END AS traits,
    CASE WHEN metadata IS NOT NULL THEN [{{'at': last_server_time, 'json': metadata}}] END AS metadata,
    CASE WHEN stream_id IS NOT NULL THEN [stream_id] END AS streams,
    errors, warnings, network_errors, rage_clicks, dead_clicks,
    lower({_joined('url', 'user_id', 'browser', 'os', _list_text('urls'), _list_text('clicked'),
                   _list_text("json_extract_string(traits, '$.*')"),
                   _list_text("json_extract_string(metadata, '$.*')"))}) AS q_text,
    lower({_joined('url', _list_text('urls'))}) AS url_text,
    lower({_list_text('clicked')}) AS clicked_text"""


def _arg(fn: str, col: str, pick: str) -> str:
    return (f"{fn}({col}, {col}_at) FILTER (WHERE {col} IS NOT NULL) AS {col}, "
            f"{pick}({col}_at) FILTER (WHERE {col} IS NOT NULL) AS {col}_at")


# Partials of one session (grouped by id) combined into one.
PARTIAL_COMBINE = f"""id, bool_or(live) AS live, min(started_at) AS started_at,
    max(last_event_at) AS last_event_at, sum(event_count)::BIGINT AS event_count,
    sum(bytes)::BIGINT AS bytes, {_arg('arg_min', 'url', 'min')},
    {_arg('arg_min', 'user_agent', 'min')}, {_arg('arg_min', 'browser', 'min')},
    {_arg('arg_min', 'os', 'min')}, {_arg('arg_max', 'user_id', 'max')},
    list_sort(flatten(list(traits) FILTER (WHERE traits IS NOT NULL))) AS traits,
    list_sort(flatten(list(metadata) FILTER (WHERE metadata IS NOT NULL))) AS metadata,
    list_distinct(flatten(list(streams) FILTER (WHERE streams IS NOT NULL))) AS streams,
    sum(errors)::INTEGER AS errors, sum(warnings)::INTEGER AS warnings,
    sum(network_errors)::INTEGER AS network_errors, sum(rage_clicks)::INTEGER AS rage_clicks,
    sum(dead_clicks)::INTEGER AS dead_clicks, string_agg(q_text, {_SEP}) AS q_text,
    string_agg(url_text, {_SEP}) AS url_text, string_agg(clicked_text, {_SEP}) AS clicked_text"""


def combined(partials: str) -> str:
    """One partial per session from a FROM item of partials."""
    return f"SELECT {PARTIAL_COMBINE} FROM {partials} GROUP BY id"


def partials_of_rows(rows: str) -> str:
    """A FROM item: the partials of index-like rows (`rows`: a FROM item with the index's
    columns; without a `live` column, live is NULL)."""
    return f"(SELECT {ROW_PARTIAL} FROM (SELECT * FROM {rows}) AS r)"


def regroup(con: duckdb.DuckDBPyConnection, touched: pa.Table, rows: pa.Table) -> pa.Table:
    """One partial per session of `touched` (partial rows, as kept) and `rows` (index-like rows:
    ROW_COLUMNS, with or without `live`) together; prepared once per connection."""
    rows = rows.select([c for c in ROWS_SCHEMA.names if c in rows.column_names])
    if "live" not in rows.column_names:
        rows = rows.append_column("live", pa.nulls(len(rows), pa.bool_()))
    sql = combined("(SELECT * FROM summaries_touched UNION ALL BY NAME SELECT * FROM "
                   f"{partials_of_rows('summaries_rows')})")
    return prepared.execute(con, "summaries_regroup", sql, {
        "summaries_touched": touched, "summaries_rows": rows.cast(ROWS_SCHEMA)}).to_arrow_table()


@dataclass(frozen=True)
class Added:
    """What commits added to the index between two snapshots: `rows` (index rows; None: none)
    took the archive from snapshot `base` to `version`, and nothing else changed it.

    The server's flusher knows this of its own commits (commits.flush_segments), and says so
    (`record`), so the search's table advances without asking the catalog.
    """

    base: int
    version: int
    rows: pa.Table | None


@dataclass
class _Archive:
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while a table is made
    tables: OrderedDict[int, pa.Table] = field(default_factory=OrderedDict)
    building: bool = False  # a whole build holds `lock` (seconds): searches by id don't wait
    added: OrderedDict[int, Added] = field(default_factory=OrderedDict)  # by base, the latest few
    # Held for dict steps only, never across a build: guards `added`, and `tables` for `keeps`.
    dict_lock: threading.Lock = field(default_factory=threading.Lock)


# Per archive (its Location: shared by every reader thread) or, without one, per connection;
# dropped with the reader that holds the key.
_archives: WeakKeyDictionary[Location | duckdb.DuckDBPyConnection, _Archive] = WeakKeyDictionary()
_archives_lock = threading.Lock()
ADDED_KEPT = 32  # commits remembered (a flush every few seconds: minutes of them)


def _archive(key: Location | duckdb.DuckDBPyConnection) -> _Archive:
    with _archives_lock:
        return _archives.setdefault(key, _Archive())


def record(loc: Location, added: Added) -> None:
    """Note what commits added to the archive at `loc` (see Added). Never waits for a build:
    the server calls it on its IOLoop."""
    archive = _archive(loc)
    with archive.dict_lock:
        archive.added[added.base] = added
        while len(archive.added) > ADDED_KEPT:
            archive.added.popitem(last=False)


def keeps(loc: Location, version: int | None = None) -> bool:
    """Whether a table is kept for the archive at `loc` (a search has read one), at `version` if given."""
    with _archives_lock:
        archive = _archives.get(loc)
    if archive is None:
        return False
    with archive.dict_lock:
        return bool(archive.tables) if version is None else version in archive.tables


def at(con: duckdb.DuckDBPyConnection, loc: Location | None, version: int,
       build: bool = True) -> pa.Table | None:
    """The sessions of the archive `con` reads at `version`, one partial row each (kept, or
    advanced from an older one; else built from the whole index, or None if not `build`);
    `loc`: that archive, whose tables all its readers share (None: kept for this connection).

    Without `build` it never waits for a build running in another thread (None then).
    """
    archive = _archive(con if loc is None else loc)
    if not _enter(archive, wait=build):
        return None
    try:  # one thread makes a table; the others wait and take it
        table = archive.tables.get(version)
        if table is None:
            older = [v for v in archive.tables if v < version]
            base = max(older) if older else None
            added = None if base is None else _added(con, archive, base, version)
            if added is not None:
                table = _advance(con, archive.tables[base], added)  # type: ignore[index]
            elif build:
                archive.building = True
                try:
                    table = _framed(_build(con, version))
                finally:
                    archive.building = False
            else:
                return None
        with archive.dict_lock:
            archive.tables[version] = table
            archive.tables.move_to_end(version)
            while len(archive.tables) > VERSIONS_KEPT:
                archive.tables.popitem(last=False)
            oldest = min(archive.tables)  # a table older than every kept one is never advanced
            for base in [b for b, a in archive.added.items() if a.version <= oldest]:
                del archive.added[base]
        return table
    finally:
        archive.lock.release()


def _enter(archive: _Archive, wait: bool) -> bool:
    if wait:
        archive.lock.acquire()
        return True
    while not archive.lock.acquire(timeout=0.01):
        if archive.building:
            return False
    return True


def of_ids(con: duckdb.DuckDBPyConnection, index: str, ids: Sequence[str]) -> pa.Table:
    """The rows `at` would give for these sessions alone, from their rows of `index` (a FROM
    item of the index at the snapshot), found by literal ids (row groups skipped by their
    statistics, where a join would read them all)."""
    wanted = sorted(set(ids))
    rows = (f"(SELECT *, NULL::BOOLEAN AS live FROM {index} "
            f"WHERE session_id IN ({', '.join('?' for _ in wanted)}))")
    return _framed(con.execute(combined(partials_of_rows(rows)), wanted).to_arrow_table())


def _framed(data: pa.Table, stale: pa.Array | None = None) -> pa.Table:
    # `stale`: a row replaced by a later one (rows are never removed in place, see _advance);
    # `pos`: each row's position, so that a search takes its page's rows without a join. Both
    # are chunked like the other columns: DuckDB's scan of misaligned chunks cost twice as much.
    n = len(data)
    lengths = [len(c) for c in data.column(0).chunks] if data.num_columns else [n]
    if stale is None:
        stale = pa.array([False] * n, pa.bool_())
    return data.append_column("stale", _split(stale, lengths)).append_column("pos", _split(_positions(n), lengths))


def take(table: pa.Table, positions: Sequence[int]) -> pa.Table:
    """The rows of a kept table at these positions (`pos`), in no particular order.

    Per chunk: pyarrow's `take` on a table of several chunks joins them all first (a copy of
    every session, 12-20 ms at 70k; measured).
    """
    out, start = [], 0
    wanted = sorted(positions)
    i = 0
    for batch in table.to_batches():
        end = start + batch.num_rows
        local = []
        while i < len(wanted) and wanted[i] < end:
            local.append(wanted[i] - start)
            i += 1
        if local:
            out.append(batch.take(pa.array(local, pa.int64())))
        start = end
    return pa.Table.from_batches(out, table.schema)


_pos = pa.array([], pa.int64())


def _positions(n: int) -> pa.Array:
    global _pos  # 0, 1, 2, ...: grown, never changed, so slices of it can be shared
    if len(_pos) < n:
        _pos = pa.array(range(max(n, 2 * len(_pos))), pa.int64())
    return _pos.slice(0, n)


def _split(array: pa.Array, lengths: list[int]) -> pa.ChunkedArray:
    chunks, at = [], 0
    for length in lengths:
        chunks.append(array.slice(at, length))
        at += length
    return pa.chunked_array(chunks or [array.slice(0, 0)], array.type)


def forget(loc: Location) -> None:
    """Drop what is kept for an archive (tests; a process that stops reading it)."""
    with _archives_lock:
        _archives.pop(loc, None)


def _build(con: duckdb.DuckDBPyConnection, version: int) -> pa.Table:
    rows = f"lake.sessions AT (VERSION => {int(version)})"
    return con.execute(combined(partials_of_rows(f"(SELECT *, NULL::BOOLEAN AS live FROM {rows})"))).to_arrow_table()


def _added(con: duckdb.DuckDBPyConnection, archive: _Archive, base: int, version: int
           ) -> Added | None:
    """What took the archive from `base` to `version`, if that only added index rows: from
    what the writer recorded (`record`), else from the catalog (a cluster node, a maintenance
    pass in between); None if anything else happened."""
    with archive.dict_lock:
        steps, reached = [], base
        while reached < version and (step := archive.added.get(reached)) is not None:
            steps.append(step)
            reached = step.version
    if reached == version:
        rows = [s.rows for s in steps if s.rows is not None and len(s.rows)]
        return Added(base, version, pa.concat_tables(rows, promote_options="default") if rows else None)
    if not only(con, base, version, INSERTS):
        return None
    return Added(base, version, con.execute(
        f"SELECT * FROM ducklake_table_insertions('{lake.LAKE}', 'main', 'sessions', {int(base) + 1}, "
        f"{int(version)})").to_arrow_table())


def _advance(con: duckdb.DuckDBPyConnection, table: pa.Table, added: Added) -> pa.Table:
    """`table` (at `added.base`) with the sessions of the added rows regrouped.

    The regrouped rows are appended and the rows they replace marked stale: the two tables share
    every other row's buffers (copying 70k sessions' texts took 35-300 ms a flush, measured).
    Once a quarter of the rows are stale (or the chunks many), the table is compacted. One
    query: each DuckDB query of these expressions costs milliseconds before its first row.
    """
    rows = added.rows
    if rows is None or not len(rows):
        return table
    touched = pc.and_(pc.is_in(table["id"], value_set=pc.unique(rows["session_id"])), pc.invert(table["stale"]))
    data = table.drop_columns(["stale", "pos"])
    regrouped = regroup(con, data.filter(touched), rows)  # few rows: the copy is small
    data = pa.concat_tables([data, regrouped.cast(data.schema)])
    stale = pa.concat_arrays([pc.or_(table["stale"], touched).combine_chunks(),
                              pa.array([False] * len(regrouped), pa.bool_())])
    if pc.sum(stale).as_py() * 4 > len(data) or data.column(0).num_chunks > MAX_CHUNKS:
        return _framed(data.filter(pc.invert(stale)).combine_chunks())
    return _framed(data, stale)


INSERTS = frozenset({"tables_inserted_into", "merge_adjacent"})
MERGES = frozenset({"merge_adjacent"})


def only(con: duckdb.DuckDBPyConnection, base: int, version: int, kinds: frozenset[str] = MERGES) -> bool:
    """Whether every snapshot after `base` up to `version` is still known and changed the index
    only in these ways (DuckLake's change kinds; a schema change alters the table: never)."""
    table_id = con.execute(
        f"""SELECT table_id FROM {lake.METADATA}.ducklake_table WHERE table_name = 'sessions'
            AND begin_snapshot <= ? AND (end_snapshot IS NULL OR end_snapshot > ?)""",
        [version, version]).fetchone()
    if table_id is None:
        return False
    names = {str(table_id[0]), "main.sessions", "sessions"}
    snaps = con.execute(
        f"""SELECT snapshot_id, changes FROM {lake.LAKE}.snapshots()
            WHERE snapshot_id > ? AND snapshot_id <= ? ORDER BY snapshot_id""", [base, version]).fetchall()
    if [s[0] for s in snaps] != list(range(base + 1, version + 1)):
        return False  # expired meanwhile: what happened is unknown
    return all(kind in kinds or not names & set(ids)
               for _, changes in snaps for kind, ids in changes.items())
