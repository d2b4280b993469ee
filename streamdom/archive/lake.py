"""Where the archive is and how to open it: DuckLake tables `events` and `sessions` by UTC day.

DuckLake keeps the table catalog (which Parquet files make up each table, per snapshot) in a SQL
database: a SQLite file next to the data when embedded (several local processes may read it
while one writes), PostgreSQL for several writers. The data stays plain, day-partitioned Parquet,
on local disk or S3:

    <data path>/main/events/day=YYYY-MM-DD/ducklake-<uuid>.parquet    one row per rrweb event
    <data path>/main/sessions/day=YYYY-MM-DD/ducklake-<uuid>.parquet  one row per (session,
        stream, contiguous run of seqs) per commit

Commits are atomic snapshots (commits.py); reads see one snapshot (queries.py); compaction,
snapshot expiry and file cleanup are DuckLake's own (maintenance.py). Extensions load from the
duckdb-extension-* wheels: nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import importlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import duckdb

from streamdom.archive import layout
from streamdom.config import Config, S3Credentials

T = TypeVar("T")
LAKE = "lake"  # the name the archive is attached under in every connection
METADATA = f"__ducklake_metadata_{LAKE}"  # DuckLake's catalog tables (its spec), as attached
CATALOG_FILE = "catalog.sqlite"  # the embedded catalog, in the data directory
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
    max_seq BIGINT NOT NULL, url VARCHAR, user_agent VARCHAR, {signals}, day DATE NOT NULL)"""
# The index's derived columns (layout.INDEX_SCHEMA): in new tables before `day`; an archive
# made before them gets them added (after `day`; rows written before read NULL).
SIGNALS_COLUMNS = (("browser", "VARCHAR"), ("os", "VARCHAR"), ("user_id", "VARCHAR"),
                   ("traits", "VARCHAR"), ("metadata", "VARCHAR"), ("urls", "VARCHAR[]"),
                   ("clicked", "VARCHAR[]"), ("errors", "INTEGER"), ("warnings", "INTEGER"),
                   ("network_errors", "INTEGER"), ("rage_clicks", "INTEGER"),
                   ("dead_clicks", "INTEGER"))
SESSIONS_DDL = SESSIONS_DDL.format(signals=", ".join(f"{n} {t}" for n, t in SIGNALS_COLUMNS))
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
class Location:
    """Where the archive lives: its data path (a directory or s3://bucket/prefix) and catalog.

    `catalog` is a SQLite file path (the embedded default) or a postgresql:// URL.
    """

    data_path: str
    catalog: str
    s3_endpoint: str | None = None
    credentials: S3Credentials | None = field(default=None, repr=False)

    @classmethod
    def of(cls, config: Config) -> Location:
        """Where a server's configuration puts the archive."""
        # Resolved: DuckLake stores the data path, and every process must name it alike (a
        # node whose --data-dir is a symlink to the shared directory too).
        data_dir = config.data_dir.resolve()
        return cls(config.archive or str(data_dir), config.catalog or str(data_dir / CATALOG_FILE),
                   config.s3_endpoint, config.s3_credentials)

    @classmethod
    def local(cls, data_dir: Path) -> Location:
        """The embedded default: data and a SQLite catalog file under one directory."""
        data_dir = data_dir.resolve()
        return cls(str(data_dir), str(data_dir / CATALOG_FILE))

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
    """A DuckDB connection with the archive attached as `lake` (created if new).

    A process's connections to one archive (with the same arguments) are cursors of one
    in-memory DuckDB database: the extensions are loaded and the archive attached once, not
    per connection (each LOAD checks the extension's signature: ~0.12 s of CPU per extension
    and database; a server's query threads each connected). Each cursor still runs its own
    transactions. The database is closed once the last of its cursors is gone.
    """
    key = (loc, tuning, read_only, threads)
    with _lock:
        shared = _databases.get(key)
        if shared is None:
            # Not DuckDB's named in-memory databases (":memory:NAME", shared through its
            # instance cache): reopening one whose last connection had just been dropped was
            # seen spinning in that cache for minutes, holding the GIL (a pytest worker).
            base = duckdb.connect(":memory:", config={
                "threads": threads, "autoinstall_known_extensions": False,
                "autoload_known_extensions": False})
            try:
                _open(base, loc, tuning, read_only)
            except BaseException:
                base.close()
                raise
            shared = _databases[key] = _Shared(base)
        shared.cursors += 1  # first: a cursor collected meanwhile must not close the database
        try:
            con = shared.base.cursor()
        except BaseException:
            _release(key, shared)
            raise
    weakref.finalize(con, _release, key, shared)
    return con


@dataclass
class _Shared:
    """A database shared by a process's connections to one archive."""

    base: duckdb.DuckDBPyConnection  # never queried after opening: its cursors are
    cursors: int = 0


_databases: dict[tuple[Location, Tuning, bool, int], _Shared] = {}
# Reentrant: a cursor may be collected (and release its database) inside connect().
_lock = threading.RLock()


def _release(key: tuple[Location, Tuning, bool, int], shared: _Shared) -> None:
    """One cursor of `shared` is gone; close the database with the last one."""
    with _lock:
        shared.cursors -= 1
        if shared.cursors == 0:
            if _databases.get(key) is shared:
                del _databases[key]
            shared.base.close()


def _open(con: duckdb.DuckDBPyConnection, loc: Location, tuning: Tuning, read_only: bool) -> None:
    """Load the extensions into a new database and attach the archive (creating it if new)."""
    postgres = loc.catalog.startswith(("postgresql://", "postgres://"))
    load_extensions(con, ["ducklake", "postgres" if postgres else "sqlite"]
                    + (["httpfs"] if loc.on_s3 else []))
    if loc.on_s3:
        creds = loc.credentials
        if creds is None:
            raise ValueError(f"no S3 credentials for {loc.data_path} (see S3Credentials.from_environment)")
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
    _attach(con, loc, opts)
    if not read_only:
        # DuckLake reads a lake's options once, at ATTACH. A writer that attached before another
        # process created the tables would keep DuckLake's defaults (inlining small inserts into
        # the catalog, where analysts' Parquet globs cannot see them): attach again once the
        # options are in the catalog.
        fresh = not _has_options(con)
        _create_tables(con, tuning)
        if fresh:
            con.execute(f"DETACH {LAKE}")
            _attach(con, loc, opts)


def _attach(con: duckdb.DuckDBPyConnection, loc: Location, opts: list[str]) -> None:
    for attempt in range(COMMIT_RETRIES):
        try:
            con.execute(f"ATTACH {_sql_str(loc.attach_target())} AS {LAKE} ({', '.join(opts)})")
            return
        except duckdb.Error:
            # Two processes attaching a new catalog at once both create its tables; the
            # loser's transaction fails, and on the next attempt it finds them.
            if attempt == COMMIT_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _has_options(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM lake.options() WHERE option_name = "
                            "'data_inlining_row_limit' AND scope_entry = 'main.sessions'").fetchone()[0])


def inlined_rows(con: duckdb.DuckDBPyConnection, version: int) -> int:
    """Rows of events and sessions at snapshot `version` stored in the catalog, not in Parquet."""
    tables = con.execute(
        f"""SELECT i.table_name FROM {METADATA}.ducklake_inlined_data_tables i
            JOIN {METADATA}.ducklake_table t ON t.table_id = i.table_id
            WHERE t.table_name IN ('events', 'sessions') AND t.begin_snapshot <= ?
              AND (t.end_snapshot IS NULL OR t.end_snapshot > ?)""", [version, version]).fetchall()
    return sum(int(con.execute(
        f"""SELECT count(*) FROM {METADATA}.{name} WHERE begin_snapshot <= ?
              AND (end_snapshot IS NULL OR end_snapshot > ?)""", [version, version]).fetchone()[0])
        for (name,) in tables)


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
    in_transaction(con, _create_step, retry_on=duckdb.Error, pause=0.05)
    in_transaction(con, _migrate_step, retry_on=duckdb.Error, pause=0.05)
    in_transaction(con, lambda c: _options_step(c, tuning), retry_on=duckdb.Error, pause=0.05)


def in_transaction(con: duckdb.DuckDBPyConnection, fn: Callable[[duckdb.DuckDBPyConnection], T],
                   retry_on: type[BaseException] = duckdb.TransactionException,
                   pause: float = 0.01) -> T:
    """`fn(con)` in one transaction; if it fails with `retry_on` (another writer committed
    first), roll back and run it again on the newer snapshot, up to COMMIT_RETRIES times."""
    for attempt in range(COMMIT_RETRIES):
        con.execute("BEGIN")
        try:
            out = fn(con)
            con.execute("COMMIT")
            return out
        except retry_on:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            if attempt == COMMIT_RETRIES - 1:
                raise
            time.sleep(pause * (attempt + 1))
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
    raise AssertionError("unreachable")


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


def _migrate_step(con: duckdb.DuckDBPyConnection) -> None:
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = 'sessions'",
        [LAKE]).fetchall()}
    for name, sql_type in SIGNALS_COLUMNS:
        if name not in have:
            con.execute(f"ALTER TABLE lake.sessions ADD COLUMN {name} {sql_type}")


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
        con.execute(f"ALTER TABLE lake.events SET SORTED BY ({', '.join(layout.SORT_KEY)})")
    if not con.execute("SELECT count(*) FROM lake.writes").fetchone()[0]:
        con.execute("INSERT INTO lake.writes VALUES (0)")


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The archive's latest snapshot id."""
    return int(con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0])


def data_files(con: duckdb.DuckDBPyConnection, table: str = "events") -> list[str]:
    """The Parquet files of a table in the current snapshot."""
    return [r[0] for r in con.execute(
        "SELECT data_file FROM ducklake_list_files('lake', ?)", [table]).fetchall()]
