"""Writing the archive: one DuckLake commit per batch, each (session, stream, seq) at most once.

Also the flusher process's jobs: a flush of WAL segments and the start-up replay of the WAL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from streamdom.archive import lake, layout, summaries
from streamdom.archive.lake import Location
from streamdom.archive.wal import read_segments, read_segments_table
from streamdom.records import (
    ROW_DATA,
    ROW_SEQ,
    ROW_SERVER_TIME,
    ROW_SESSION,
    ROW_STREAM,
    ROW_TIMESTAMP,
    Row,
)
from streamdom.signals import Signals, SignalTracker, by_stream

INDEX_COLUMNS = [f.name for f in layout.INDEX_SCHEMA]
SESSIONS_ARROW = layout.INDEX_SCHEMA.append(pa.field("day", pa.date32(), nullable=False))
EVENTS_ARROW = layout.EVENTS_SCHEMA.append(pa.field("day", pa.date32(), nullable=False))
StreamInfo = dict[tuple[str, str], tuple[str, str]]
StreamSignals = dict[tuple[str, str], Signals]


def commit(con: duckdb.DuckDBPyConnection, rows: Sequence[Row], stream_info: StreamInfo,
           dedup: bool = True, signals: StreamSignals | None = None,
           tracker: SignalTracker | None = None) -> int:
    """Archive record rows in one DuckLake commit (see `commit_index`); returns how many were new."""
    return commit_index(con, rows, stream_info, dedup, signals, tracker)[0]


def commit_index(con: duckdb.DuckDBPyConnection, rows: Sequence[Row], stream_info: StreamInfo,
                 dedup: bool = True, signals: StreamSignals | None = None,
                 tracker: SignalTracker | None = None) -> tuple[int, pa.Table | None]:
    """Archive record rows in one DuckLake commit, each (session, stream, seq) at most once ever.

    Rows already archived (by anyone, before or concurrently) are skipped inside the commit, so
    committing the same batch again, after a crash between commit and ack, adds nothing.
    `dedup=False` skips that check: only for the archive's sole writer with rows it knows are
    new (the embedded server's periodic flush; its crash recovery commits with dedup).
    `signals`: what the rows say per stream (streamdom/signals.py), when the caller derived it
    as they arrived (the embedded server's tail); else they are derived here from the new rows,
    with `tracker` (the caller's, so that clicks at the end of one commit are decided by the
    next; a fresh one if None). Returns how many rows were new, and the index rows the commit
    added to `sessions` (None if none).
    """
    if not rows:
        return 0, None
    # A conflict means another writer committed first (see WRITES_DDL): dedup again on its snapshot.
    keys = {(r[ROW_SESSION], r[ROW_STREAM]) for r in rows} if signals is None else set()

    def attempt(c: duckdb.DuckDBPyConnection) -> tuple[tuple[int, pa.Table | None], SignalTracker]:
        # A commit that conflicts runs again: it feeds its rows to a fresh fork each time.
        mine = SignalTracker() if tracker is None else tracker.fork(keys)
        return _commit_once(c, rows, stream_info, dedup, signals, mine), mine

    done, fork = lake.in_transaction(con, attempt)
    if tracker is not None:
        tracker.absorb(fork)
    return done


def _commit_once(con: duckdb.DuckDBPyConnection, rows: Sequence[Row], stream_info: StreamInfo,
                 dedup: bool, signals: StreamSignals | None, tracker: SignalTracker
                 ) -> tuple[int, pa.Table | None]:
    if dedup:
        con.execute("UPDATE lake.writes SET commits = commits + 1")
        fresh = new_rows(rows, archived_runs(con, {r[ROW_SESSION] for r in rows}))
    else:
        fresh = list(rows)
    if fresh:
        if signals is None:
            signals = by_stream(sorted(fresh, key=lambda r: (r[ROW_SESSION], r[ROW_STREAM], r[ROW_SEQ])),
                                tracker)
        return _insert(con, *tables(layout.rows_table(fresh), stream_info, signals))
    return 0, None


def _insert(con: duckdb.DuckDBPyConnection, events: pa.Table, index: pa.Table) -> tuple[int, pa.Table]:
    con.register("fresh_events", events)
    con.register("fresh_index", index)
    try:
        con.execute("INSERT INTO lake.events SELECT * FROM fresh_events")
        con.execute("INSERT INTO lake.sessions BY NAME SELECT * FROM fresh_index")
    finally:
        con.unregister("fresh_events")
        con.unregister("fresh_index")
    return len(events), index


Runs = dict[tuple[str, str], list[tuple[int, int]]]


def archived_runs(con: duckdb.DuckDBPyConnection, session_ids: Iterable[str]) -> Runs:
    """The archived seq runs (min, max) of every stream of some sessions, from the index."""
    out: Runs = {}
    for sid, stream, lo, hi in con.execute(
            "SELECT session_id, stream_id, min_seq, max_seq FROM lake.sessions "
            "WHERE session_id IN (SELECT unnest(?::VARCHAR[]))", [sorted(session_ids)]).fetchall():
        out.setdefault((sid, stream), []).append((lo, hi))
    return out


def new_rows(rows: Iterable[Row], runs: Runs) -> list[Row]:
    """Rows whose (session, stream, seq) is in no archived run and not earlier in `rows`."""
    tops = {k: max(hi for _, hi in v) for k, v in runs.items()}
    seen: set[tuple[str, str, int]] = set()
    out = []
    for r in rows:
        key = (r[ROW_SESSION], r[ROW_STREAM])
        seq = r[ROW_SEQ]
        if seq <= tops.get(key, 0) and any(lo <= seq <= hi for lo, hi in runs[key]):
            continue
        if (key[0], key[1], seq) in seen:
            continue
        seen.add((key[0], key[1], seq))
        out.append(r)
    return out


def tables(rows: pa.Table, stream_info: StreamInfo,
           signals: StreamSignals | None = None) -> tuple[pa.Table, pa.Table]:
    """The events rows (sorted by session and time) and their index rows, with their day, of a
    table of record rows (layout.ROWS_SCHEMA).

    Index rows describe contiguous runs of seqs within one day, so that "seq within an index
    row's [min_seq, max_seq]" means "archived": that is how commits deduplicate.
    """
    events, index = [], []
    for day, day_rows in layout.split_by_day(rows).items():
        ev = layout.records_table(day_rows)
        ix = layout.index_table(ev, stream_info)
        span = pc.add(pc.subtract(ix["max_seq"], ix["min_seq"]), 1)
        gaps = pc.not_equal(ix["event_count"], span)
        if pc.any(gaps).as_py():  # a stream with holes (the recorder dropped events): split it
            holed = ix.filter(gaps)
            ix = pa.concat_tables([ix.filter(pc.invert(gaps)), _runs(layout.table_rows(ev), holed)])
        day_col = pa.array([date.fromisoformat(day)], pa.date32())
        events.append(ev.append_column(EVENTS_ARROW.field("day"), pa.repeat(day_col[0], len(ev))))
        index.append(ix.append_column(SESSIONS_ARROW.field("day"), pa.repeat(day_col[0], len(ix))))
    return pa.concat_tables(events), layout.with_signals(pa.concat_tables(index), signals or {})


def _runs(rows: list[Row], holed: pa.Table) -> pa.Table:
    """Index rows, one per contiguous run of seqs, for the streams of `holed` (whose url/ua they keep)."""
    meta = {(r["session_id"], r["stream_id"]): (r["url"], r["user_agent"], r["browser"], r["os"])
            for r in holed.to_pylist()}
    cols: dict[str, list[object]] = {c: [] for c in INDEX_COLUMNS}
    run: list[Row] = []

    def close() -> None:
        sts, tss = [r[ROW_SERVER_TIME] for r in run], [r[ROW_TIMESTAMP] for r in run]
        url, ua, browser, os = meta[(run[0][ROW_SESSION], run[0][ROW_STREAM])]
        for name, value in (
                ("session_id", run[0][ROW_SESSION]), ("stream_id", run[0][ROW_STREAM]),
                ("first_server_time", min(sts)), ("last_server_time", max(sts)),
                ("first_timestamp", min(tss)), ("last_timestamp", max(tss)), ("event_count", len(run)),
                ("bytes", sum(len(r[ROW_DATA].encode()) for r in run)), ("min_seq", run[0][ROW_SEQ]),
                ("max_seq", run[-1][ROW_SEQ]), ("url", url), ("user_agent", ua),
                ("browser", browser), ("os", os), *layout.signal_values(None).items()):
            cols[name].append(value)

    for r in sorted((r for r in rows if (r[ROW_SESSION], r[ROW_STREAM]) in meta), key=lambda r: (r[ROW_SESSION], r[ROW_STREAM], r[ROW_SEQ])):
        if run and ((r[ROW_SESSION], r[ROW_STREAM]) != (run[0][ROW_SESSION], run[0][ROW_STREAM]) or r[ROW_SEQ] != run[-1][ROW_SEQ] + 1):
            close()
            run = []
        run.append(r)
    if run:
        close()
    return pa.table(cols, schema=layout.INDEX_SCHEMA)



# --- jobs of the flusher process ------------------------------------------------------------
_writers = threading.local()  # per thread: a DuckDB connection runs one transaction at a time


def writer(loc: Location) -> duckdb.DuckDBPyConnection:
    """This thread's writer connection to the archive (kept open: attaching costs ms)."""
    cons: dict[Location, duckdb.DuckDBPyConnection] = _writers.__dict__.setdefault("cons", {})
    con = cons.get(loc)
    if con is None:
        con = cons[loc] = lake.connect(loc)
    return con


def flush_segments(loc: Location, segments: list[Path], stream_info: StreamInfo,
                   signals: StreamSignals | None = None) -> tuple[int, int, summaries.Added | None]:
    """Commit the rows of closed WAL segments; returns (rows written, the archive's version,
    what the commit added to the index if that version is the commit's own snapshot).

    The server is the archive's only writer and its WAL holds each event once (duplicates
    are refused at ingest, by seq), so this commit skips the exactly-once check. `signals`:
    what the log's tail derived from these rows as they arrived. The index rows go back to the
    server, which advances its per-session table with them instead of asking the catalog
    (summaries.py).
    """
    con = writer(loc)
    # Read as one Arrow table (no Python object per event) and committed as the rows' table
    # commit_index would build: no exactly-once check, the tail's signals.
    rows = read_segments_table(segments)
    before = lake.current_version(con)
    n, index = 0, None
    if len(rows):
        n, index = lake.in_transaction(con, lambda c: _insert(c, *tables(rows, stream_info, signals or {})))
    version = lake.current_version(con)
    # Snapshot ids go up by one per commit: only if nothing else committed between the two
    # reads is `version` this commit's snapshot, made on `before` by adding these rows.
    added = summaries.Added(before, version, index) if index is not None and version == before + 1 else None
    return n, version, added


def replay(loc: Location, segments: list[Path]) -> tuple[int, int, list[str], bool]:
    """Start-up, with no other writer: delete the Parquet files of commits that never completed
    (a crash mid-flush: a glob over the data would see their events twice), then commit what the
    WAL still holds, skipping what a flush already archived (a crash between its commit and the
    segments' deletion). Returns (new rows, the archive's version, the files deleted, whether
    the archive holds any session)."""
    con = writer(loc)
    orphans = [r[0] for r in con.execute(
        "SELECT * FROM ducklake_delete_orphaned_files('lake', cleanup_all => true)").fetchall()]
    n = commit(con, read_segments(segments), {})
    holds = con.execute("SELECT 1 FROM lake.sessions LIMIT 1").fetchone() is not None
    return n, lake.current_version(con), orphans, holds
