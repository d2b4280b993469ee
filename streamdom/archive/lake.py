"""The archive as DuckLake tables: `events` and the `sessions` index, partitioned by UTC day.

DuckLake keeps the table catalog (which Parquet files make up each table, per snapshot) in a SQL
database: a SQLite file next to the data when embedded (several local processes may read it
while one writes), PostgreSQL for several writers. The data stays plain, day-partitioned Parquet,
on local disk or S3:

    <data path>/main/events/day=YYYY-MM-DD/ducklake-<uuid>.parquet    one row per rrweb event
    <data path>/main/sessions/day=YYYY-MM-DD/ducklake-<uuid>.parquet  one row per (session,
        stream, contiguous run of seqs) per commit

Commits are atomic snapshots; compaction, snapshot expiry and file cleanup are DuckLake's own.
Extensions load from the duckdb-extension-* wheels: nothing is downloaded at run time.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from streamdom.archive import layout
from streamdom.records import (
    ROW_DATA,
    ROW_SEQ,
    ROW_SERVER_TIME,
    ROW_SESSION,
    ROW_STREAM,
    ROW_TIMESTAMP,
    Row,
)

LAKE = "lake"  # the name the archive is attached under in every connection
COMMIT_RETRIES = 20

EVENTS_DDL = """CREATE TABLE IF NOT EXISTS lake.events (
    session_id VARCHAR NOT NULL, stream_id VARCHAR NOT NULL, seq BIGINT NOT NULL,
    type TINYINT NOT NULL, source SMALLINT, timestamp BIGINT NOT NULL, server_time BIGINT NOT NULL,
    data VARCHAR NOT NULL, extra VARCHAR, day DATE NOT NULL)"""
SESSIONS_DDL = """CREATE TABLE IF NOT EXISTS lake.sessions (
    session_id VARCHAR NOT NULL, stream_id VARCHAR NOT NULL,
    first_server_time BIGINT NOT NULL, last_server_time BIGINT NOT NULL,
    first_timestamp BIGINT NOT NULL, last_timestamp BIGINT NOT NULL,
    event_count BIGINT NOT NULL, bytes BIGINT NOT NULL, min_seq BIGINT NOT NULL,
    max_seq BIGINT NOT NULL, url VARCHAR, user_agent VARCHAR, day DATE NOT NULL)"""
# One inlined row that every write updates: two writers' commits then conflict (both delete the
# row), so the loser retries on the winner's snapshot and its dedup sees the winner's rows.
# Plain concurrent INSERTs do not conflict in DuckLake: both would commit the same events.
WRITES_DDL = "CREATE TABLE IF NOT EXISTS lake.writes (commits BIGINT NOT NULL)"



@dataclass(frozen=True)
class Tuning:
    """Physical layout knobs (measured in benchmarks/archive.py)."""

    compression_level: int = 9
    row_group_size: int = 65_536
    sort: bool = True  # events sorted by session and time within each file (on insert and merge)
    inlining_rows: int = 0  # inlined rows are invisible to a read_parquet glob: keep 0


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair (never printed)."""

    key_id: str = field(repr=False)
    secret: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> S3Credentials:
        """From AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else the
        shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, AWS_PROFILE)."""
        env = dict(os.environ if env is None else env)
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return cls(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                       env.get("AWS_SESSION_TOKEN"), region)
        path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
        profile = env.get("AWS_PROFILE", "default")
        parser = configparser.ConfigParser()
        if parser.read(path) and parser.has_section(profile):
            sec = parser[profile]
            if sec.get("aws_access_key_id") and sec.get("aws_secret_access_key"):
                return cls(sec["aws_access_key_id"], sec["aws_secret_access_key"],
                           sec.get("aws_session_token"), sec.get("region", region))
        raise ValueError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                         f"or put a [{profile}] section in {path}")


@dataclass(frozen=True)
class Location:
    """Where the archive lives: its data path (a directory or s3://bucket/prefix) and catalog.

    `catalog` is a SQLite file path (the embedded default) or a postgresql:// URL.
    """

    data_path: str
    catalog: str
    s3_endpoint: str | None = None
    credentials: S3Credentials | None = field(default=None, repr=False)

    @classmethod
    def local(cls, data_dir: Path) -> Location:
        """The embedded default: data and a SQLite catalog file under one directory."""
        return cls(str(data_dir), str(data_dir / "catalog.sqlite"))

    @property
    def on_s3(self) -> bool:
        """Whether the data path is on S3-compatible storage."""
        return self.data_path.startswith("s3://")

    def attach_target(self) -> str:
        """The `ducklake:` string for ATTACH (secrets included for PostgreSQL; never log it)."""
        if self.catalog.startswith(("postgresql://", "postgres://")):
            return "ducklake:postgres:" + _libpq(self.catalog)
        return "ducklake:sqlite:" + self.catalog

    def data_path_slash(self) -> str:
        """The data path with one trailing slash, as DuckLake stores it."""
        return self.data_path.rstrip("/") + "/"


def _libpq(url: str) -> str:
    """A postgresql:// URL as a libpq keyword string (what DuckDB's postgres extension takes)."""
    u = urlsplit(url)
    parts = {"dbname": u.path.lstrip("/") or None, "host": u.hostname, "port": u.port,
             "user": unquote(u.username) if u.username else None,
             "password": unquote(u.password) if u.password else None}
    for kv in filter(None, u.query.split("&")):
        k, _, v = kv.partition("=")
        parts[k] = unquote(v)
    return " ".join(f"{k}={_quote_kw(str(v))}" for k, v in parts.items() if v is not None)


def _quote_kw(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" if (not v or " " in v or "'" in v) else v


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# --- connections -------------------------------------------------------------------------------
def load_extensions(con: duckdb.DuckDBPyConnection, names: Iterable[str]) -> None:
    """Load extensions from the duckdb-extension-* wheels (INSTALL from the wheel's file, no download).

    INSTALL copies the file into DuckDB's extension directory (~/.duckdb) under the name DuckDB
    knows it by (sqlite -> sqlite_scanner), which a bare LOAD of the file path would not do.
    """
    for name in names:
        if name not in _installed:
            mod = importlib.import_module(f"duckdb_extension_{name}")
            path = (Path(str(mod.__file__)).parent / "extensions" / f"v{duckdb.__version__}"
                    / f"{name}.duckdb_extension")
            con.execute(f"INSTALL {_sql_str(str(path))}")
            _installed.add(name)
        con.execute(f"LOAD {name}")


_installed: set[str] = set()


def connect(loc: Location, tuning: Tuning = Tuning(), read_only: bool = False,
            threads: int = 1) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the archive attached as `lake` (created if new)."""
    con = duckdb.connect(":memory:", config={
        "threads": threads, "autoinstall_known_extensions": False,
        "autoload_known_extensions": False})
    postgres = loc.catalog.startswith(("postgresql://", "postgres://"))
    load_extensions(con, ["ducklake", "postgres" if postgres else "sqlite"]
                    + (["httpfs"] if loc.on_s3 else []))
    if loc.on_s3:
        creds = loc.credentials or S3Credentials.from_environment()
        endpoint = urlsplit(loc.s3_endpoint) if loc.s3_endpoint else None
        opts = [f"KEY_ID {_sql_str(creds.key_id)}", f"SECRET {_sql_str(creds.secret)}",
                f"REGION {_sql_str(creds.region)}"]
        if creds.session_token:
            opts.append(f"SESSION_TOKEN {_sql_str(creds.session_token)}")
        if endpoint:
            opts += [f"ENDPOINT {_sql_str(endpoint.netloc)}", "URL_STYLE 'path'",
                     f"USE_SSL {'true' if endpoint.scheme == 'https' else 'false'}"]
        con.execute(f"CREATE OR REPLACE TEMPORARY SECRET streamdom_s3 (TYPE s3, {', '.join(opts)})")
    if not postgres:
        _prepare_sqlite(Path(loc.catalog))
    opts = [f"DATA_PATH {_sql_str(loc.data_path_slash())}"]
    if read_only:
        opts.append("READ_ONLY")
    for attempt in range(COMMIT_RETRIES):
        try:
            con.execute(f"ATTACH {_sql_str(loc.attach_target())} AS {LAKE} ({', '.join(opts)})")
            break
        except duckdb.Error:
            # Two processes attaching a new catalog at once both create its tables; the
            # loser's transaction fails, and on the next attempt it finds them.
            if attempt == COMMIT_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    if not read_only:
        _create_tables(con, tuning)
    return con


def _prepare_sqlite(path: Path) -> None:
    # WAL journal: readers in other processes (the server's queries, analysts) never wait for
    # the writer's commits, nor it for them. The mode is stored in the file, so set it once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")


def _create_tables(con: duckdb.DuckDBPyConnection, tuning: Tuning) -> None:
    """Create the tables, then set their options (a table's options cannot be set in the
    transaction that creates it); concurrent creators conflict and retry."""
    steps = (_create_step, lambda c: _options_step(c, tuning))
    for step in steps:
        for attempt in range(COMMIT_RETRIES):
            try:
                con.execute("BEGIN")
                step(con)
                con.execute("COMMIT")
                break
            except duckdb.Error:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                if attempt == COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))


def _create_step(con: duckdb.DuckDBPyConnection) -> None:
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND "
                   "table_name = 'writes'", [LAKE]).fetchone()[0]:
        return
    con.execute(EVENTS_DDL)
    con.execute("ALTER TABLE lake.events SET PARTITIONED BY (day)")
    con.execute(SESSIONS_DDL)
    con.execute("ALTER TABLE lake.sessions SET PARTITIONED BY (day)")
    con.execute("ALTER TABLE lake.sessions SET SORTED BY (session_id)")
    con.execute(WRITES_DDL)


def _options_step(con: duckdb.DuckDBPyConnection, tuning: Tuning) -> None:
    have = {(r[0], r[1]): r[2] for r in con.execute(
        "SELECT option_name, coalesce(scope_entry, ''), value FROM lake.options()").fetchall()}
    want = {("parquet_compression", ""): "zstd",
            ("parquet_compression_level", ""): str(int(tuning.compression_level)),
            ("parquet_row_group_size", ""): str(int(tuning.row_group_size)),
            # Commits insert rows already sorted (tables()); merges sort by SORTED BY.
            ("sort_on_insert", ""): "false",
            # Inlined rows would be invisible to a read_parquet glob over the data directory.
            ("data_inlining_row_limit", "main.events"): str(int(tuning.inlining_rows)),
            ("data_inlining_row_limit", "main.sessions"): str(int(tuning.inlining_rows)),
            # The marker row lives in the catalog, never in a Parquet file.
            ("data_inlining_row_limit", "main.writes"): "10"}
    for (name, scope), value in want.items():
        if have.get((name, scope)) != value:
            table = f", table_name => {_sql_str(scope.split('.')[1])}" if scope else ""
            val = _sql_str(value) if name == "parquet_compression" else value
            val = "false" if value == "false" else val
            con.execute(f"CALL lake.set_option({_sql_str(name)}, {val}{table})")
    if tuning.sort and not con.execute(
            "SELECT count(*) FROM lake.writes").fetchone()[0]:
        con.execute("ALTER TABLE lake.events SET SORTED BY (session_id, server_time, stream_id, seq)")
    if not con.execute("SELECT count(*) FROM lake.writes").fetchone()[0]:
        con.execute("INSERT INTO lake.writes VALUES (0)")


# --- writing -----------------------------------------------------------------------------------
INDEX_COLUMNS = [f.name for f in layout.INDEX_SCHEMA]
SESSIONS_ARROW = layout.INDEX_SCHEMA.append(pa.field("day", pa.date32(), nullable=False))
EVENTS_ARROW = layout.EVENTS_SCHEMA.append(pa.field("day", pa.date32(), nullable=False))
StreamInfo = dict[tuple[str, str], tuple[str, str]]


def commit(con: duckdb.DuckDBPyConnection, rows: Sequence[Row], stream_info: StreamInfo,
           dedup: bool = True) -> int:
    """Archive record rows in one DuckLake commit, each (session, stream, seq) at most once ever.

    Rows already archived (by anyone, before or concurrently) are skipped inside the commit, so
    committing the same batch again, after a crash between commit and ack, adds nothing.
    `dedup=False` skips that check: only for the archive's sole writer with rows it knows are
    new (the embedded server's periodic flush; its crash recovery commits with dedup).
    Returns how many rows were new.
    """
    if not rows:
        return 0
    for attempt in range(COMMIT_RETRIES):
        try:
            return _commit_once(con, rows, stream_info, dedup)
        except duckdb.TransactionException:
            # Another writer committed first (see WRITES_DDL): dedup again on its snapshot.
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            if attempt == COMMIT_RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
    raise AssertionError("unreachable")


def _commit_once(con: duckdb.DuckDBPyConnection, rows: Sequence[Row], stream_info: StreamInfo,
                 dedup: bool) -> int:
    con.execute("BEGIN")
    if dedup:
        con.execute("UPDATE lake.writes SET commits = commits + 1")
        fresh = new_rows(rows, archived_runs(con, {r[ROW_SESSION] for r in rows}))
    else:
        fresh = list(rows)
    if fresh:
        events, index = tables(fresh, stream_info)
        con.register("fresh_events", events)
        con.register("fresh_index", index)
        try:
            con.execute("INSERT INTO lake.events SELECT * FROM fresh_events")
            con.execute("INSERT INTO lake.sessions SELECT * FROM fresh_index")
        finally:
            con.unregister("fresh_events")
            con.unregister("fresh_index")
    con.execute("COMMIT")
    return len(fresh)


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


def tables(rows: list[Row], stream_info: StreamInfo) -> tuple[pa.Table, pa.Table]:
    """The events rows (sorted by session and time) and their index rows, with their day.

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
            ix = pa.concat_tables([ix.filter(pc.invert(gaps)), _runs(day_rows, holed)])
        day_col = pa.array([date.fromisoformat(day)], pa.date32())
        events.append(ev.append_column(EVENTS_ARROW.field("day"), pa.repeat(day_col[0], len(ev))))
        index.append(ix.append_column(SESSIONS_ARROW.field("day"), pa.repeat(day_col[0], len(ix))))
    return pa.concat_tables(events), pa.concat_tables(index)


def _runs(rows: list[Row], holed: pa.Table) -> pa.Table:
    """Index rows, one per contiguous run of seqs, for the streams of `holed` (whose url/ua they keep)."""
    meta = {(r["session_id"], r["stream_id"]): (r["url"], r["user_agent"]) for r in holed.to_pylist()}
    cols: dict[str, list[object]] = {c: [] for c in INDEX_COLUMNS}
    run: list[Row] = []

    def close() -> None:
        sts, tss = [r[ROW_SERVER_TIME] for r in run], [r[ROW_TIMESTAMP] for r in run]
        url, ua = meta[(run[0][ROW_SESSION], run[0][ROW_STREAM])]
        for name, value in (
                ("session_id", run[0][ROW_SESSION]), ("stream_id", run[0][ROW_STREAM]),
                ("first_server_time", min(sts)), ("last_server_time", max(sts)),
                ("first_timestamp", min(tss)), ("last_timestamp", max(tss)), ("event_count", len(run)),
                ("bytes", sum(len(r[ROW_DATA].encode()) for r in run)), ("min_seq", run[0][ROW_SEQ]),
                ("max_seq", run[-1][ROW_SEQ]), ("url", url), ("user_agent", ua)):
            cols[name].append(value)

    for r in sorted((r for r in rows if (r[ROW_SESSION], r[ROW_STREAM]) in meta), key=lambda r: (r[ROW_SESSION], r[ROW_STREAM], r[ROW_SEQ])):
        if run and ((r[ROW_SESSION], r[ROW_STREAM]) != (run[0][ROW_SESSION], run[0][ROW_STREAM]) or r[ROW_SEQ] != run[-1][ROW_SEQ] + 1):
            close()
            run = []
        run.append(r)
    if run:
        close()
    return pa.table(cols, schema=layout.INDEX_SCHEMA)


# --- upkeep ------------------------------------------------------------------------------------
def maintain(con: duckdb.DuckDBPyConnection, first_kept_day: str | None = None,
             holds_lease: Callable[[], bool] = lambda: True) -> None:
    """One maintenance pass, all DuckLake's own functions; each step only under the caller's lease.

    1. Delete the files that earlier passes retired (merged away, expired): readers that
       started before those passes have had a whole interval to finish.
    2. Retention: drop whole days before `first_kept_day`.
    3. Merge small files (sorted by SORTED BY).
    4. Expire every snapshot but the latest, so the catalog stays small; what only old
       snapshots used is deleted by the next pass's step 1.
    (The pass, not an `older_than` time, is the grace period: with a SQLite catalog
    ducklake_cleanup_old_files' `older_than` compares timestamps as text and deletes
    files retired moments ago.)
    """
    for step in (cleanup, lambda c: first_kept_day and expire_days(c, first_kept_day), compact):
        if not holds_lease():
            return
        step(con)


def compact(con: duckdb.DuckDBPyConnection) -> None:
    """Merge adjacent small files, then expire old snapshots (the replaced files stay until cleanup)."""
    con.execute("CALL ducklake_merge_adjacent_files('lake')")
    con.execute("CALL ducklake_expire_snapshots('lake', older_than => now())")


def cleanup(con: duckdb.DuckDBPyConnection) -> None:
    """Delete every file no longer in the current snapshot (merged away, expired, deleted days)."""
    con.execute("SELECT count(*) FROM ducklake_cleanup_old_files('lake', cleanup_all => true)").fetchall()
    if not con.execute("SELECT value FROM lake.options() WHERE option_name = 'data_path'"
                       ).fetchone()[0].startswith("s3://"):
        _remove_empty_day_dirs(con)


def _remove_empty_day_dirs(con: duckdb.DuckDBPyConnection) -> None:
    root = Path(con.execute("SELECT value FROM lake.options() WHERE option_name = 'data_path'").fetchone()[0])
    for d in root.glob("main/*/day=*"):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty


def expire_days(con: duckdb.DuckDBPyConnection, first_kept_day: str) -> None:
    """Retention: drop every row of days before `first_kept_day` (whole files, one commit)."""
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM lake.events WHERE day < ?::DATE", [first_kept_day])
        con.execute("DELETE FROM lake.sessions WHERE day < ?::DATE", [first_kept_day])
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


# --- reading -----------------------------------------------------------------------------------
def list_sessions(con: duckdb.DuckDBPyConnection, since: int, before: int | None, q: str | None,
                  limit: int) -> list[dict[str, object]]:
    """Session summaries from the index, by most recent activity, active in [since, before)."""
    sql = f"""
        SELECT session_id AS id, min(first_server_time) AS started_at,
               max(last_server_time) AS last_event_at, sum(event_count)::BIGINT AS event_count,
               sum(bytes)::BIGINT AS bytes, arg_min(url, first_server_time) AS url,
               arg_min(user_agent, first_server_time) AS user_agent
        FROM lake.sessions
        GROUP BY session_id
        HAVING max(last_server_time) >= ? {"AND max(last_server_time) < ?" if before else ""}
        {"AND (session_id ILIKE ? OR any_value(url) ILIKE ?)" if q else ""}
        ORDER BY last_event_at DESC
        LIMIT ?"""
    params: list[object] = [since]
    if before:
        params.append(before)
    if q:
        params += [f"%{q}%", f"%{q}%"]
    params.append(limit)
    rel = con.execute(sql, params)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]


def session_summary(con: duckdb.DuckDBPyConnection, session_id: str
                    ) -> tuple[dict[str, object] | None, list[str]]:
    """A session's archived summary and the days holding it (None if unknown)."""
    row = con.execute(
        """SELECT min(first_server_time), max(last_server_time), sum(event_count)::BIGINT,
                  sum(bytes)::BIGINT, arg_min(url, first_server_time),
                  arg_min(user_agent, first_server_time), list(DISTINCT day::VARCHAR ORDER BY day::VARCHAR)
           FROM lake.sessions WHERE session_id = ?""", [session_id]).fetchone()
    if row is None or row[0] is None:
        return None, []
    return {"id": session_id, "started_at": row[0], "last_event_at": row[1], "event_count": row[2],
            "bytes": row[3], "url": row[4], "user_agent": row[5]}, list(row[6])


# Re-assembles each stored row into the rrweb event exactly as recorded.
EVENT_SQL = (
    "'{\"type\":' || type || ',\"data\":' || data || ',\"timestamp\":' || timestamp"
    " || coalesce(',' || substr(extra, 2, length(extra) - 2), '') || '}'"
)


def session_events(con: duckdb.DuckDBPyConnection, session_id: str, days: Sequence[str],
                   offset: int, limit: int | None) -> list[tuple[str, int, int, str]]:
    """(stream_id, seq, server_time, event JSON) of a session, in order, one page."""
    if not days:
        return []
    # Literal days, so DuckLake prunes whole partitions before reading any file.
    sql = f"""SELECT stream_id, seq, server_time, {EVENT_SQL} FROM lake.events
              WHERE session_id = ? AND day IN ({", ".join("?::DATE" for _ in days)})
              ORDER BY server_time, stream_id, seq
              {"LIMIT ?" if limit is not None else ""} OFFSET ?"""
    params: list[object] = [session_id, *days]
    if limit is not None:
        params.append(limit)
    params.append(offset)
    return con.execute(sql, params).fetchall()


def stream_high_seqs(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]] | None = None
                     ) -> dict[tuple[str, str], int]:
    """Highest archived seq per (session, stream), optionally only for some sessions."""
    sql = "SELECT session_id, stream_id, max(max_seq) FROM lake.sessions"
    params: list[object] = []
    if keys is not None:
        sids = sorted({k[0] for k in keys})
        if not sids:
            return {}
        sql += " WHERE session_id IN (SELECT unnest(?::VARCHAR[]))"
        params.append(sids)
    sql += " GROUP BY ALL"
    return {(a, b): int(c) for a, b, c in con.execute(sql, params).fetchall()}


def data_files(con: duckdb.DuckDBPyConnection, table: str = "events") -> list[str]:
    """The Parquet files of a table in the current snapshot."""
    return [r[0] for r in con.execute(
        "SELECT data_file FROM ducklake_list_files('lake', ?)", [table]).fetchall()]
