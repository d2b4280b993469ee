"""Upkeep of the archive, all through DuckLake's own functions: retention, merges, cleanup.

`first_kept_day` is the policy (pure); `maintain` is the one pass (run in the flusher process,
or by a cluster archiver under its lease); `run` is the server's entry point.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from streamdom.archive import commits, lake, summaries
from streamdom.archive.lake import Location

log = logging.getLogger(__name__)

RunJob = Callable[..., Awaitable[object]]


def first_kept_day(retention_days: int, today: datetime | None = None) -> str:
    """The oldest UTC day the retention window keeps (today counts as day 1)."""
    today = today or datetime.now(UTC)
    return (today - timedelta(days=retention_days - 1)).strftime("%Y-%m-%d")


async def run(loc: Location, retention_days: int, keep_from: int | None, run_job: RunJob
              ) -> tuple[int, summaries.Added | None] | None:
    """One pass in the flusher process; returns the archive's version after it and, if the pass
    only merged files, that it left the index's rows as they were (None: failed)."""
    try:
        return await run_job(pass_job, loc, first_kept_day(retention_days), keep_from)  # type: ignore[return-value]
    except (OSError, duckdb.Error) as exc:
        log.error("archive maintenance failed (nothing lost; next pass retries): %s", exc)
        return None


def pass_job(loc: Location, first_kept: str, keep_from: int | None) -> tuple[int, summaries.Added | None]:
    """The flusher process's side of `run`."""
    con = commits.writer(loc)
    before = lake.current_version(con)
    maintain(con, first_kept, keep_from=keep_from)
    version = lake.current_version(con)
    # Asked here, in the flusher process, so that the server's readers need not ask the catalog.
    unchanged = version > before and summaries.only(con, before, version, summaries.MERGES)
    return version, summaries.Added(before, version, None) if unchanged else None


def maintain(con: duckdb.DuckDBPyConnection, first_kept: str | None = None,
             holds_lease: Callable[[], bool] = lambda: True, keep_from: int | None = None) -> None:
    """One maintenance pass, all DuckLake's own functions; each step only under the caller's lease.

    1. Delete the files that earlier passes retired (merged away, expired): readers that
       started before those passes have had a whole interval to finish.
    2. Retention: drop whole days before `first_kept`.
    3. Merge small files (sorted by SORTED BY).
    4. Expire old snapshots, so the catalog stays small: those before `keep_from` (the oldest a
       reader may still ask for; None: every one but the latest). What only they used is
       deleted by the next pass's step 1.
    (The pass, not an `older_than` time, is the grace period: with a SQLite catalog
    ducklake_cleanup_old_files' `older_than` compares timestamps as text and deletes
    files retired moments ago.)
    """
    steps: list[Callable[[duckdb.DuckDBPyConnection], object]] = [cleanup]
    if first_kept:
        steps.append(lambda c: expire_days(c, first_kept))
    steps += [lambda c: con.execute("CALL ducklake_merge_adjacent_files('lake')"),
              lambda c: expire_snapshots(c, keep_from)]
    for step in steps:
        if not holds_lease():
            return
        step(con)


def expire_snapshots(con: duckdb.DuckDBPyConnection, keep_from: int | None = None) -> None:
    """Expire snapshots before `keep_from` (None: all but the latest); their files go at cleanup."""
    if keep_from is None:
        con.execute("CALL ducklake_expire_snapshots('lake', older_than => now())")
        return
    old = [r[0] for r in con.execute(
        "SELECT snapshot_id FROM lake.snapshots() WHERE snapshot_id < ?", [keep_from]).fetchall()]
    if old:
        con.execute("CALL ducklake_expire_snapshots('lake', versions => ?)", [old])


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


def expire_days(con: duckdb.DuckDBPyConnection, first_kept: str) -> None:
    """Retention: drop every row of days before `first_kept` (whole files, one commit)."""
    def drop(c: duckdb.DuckDBPyConnection) -> None:
        c.execute("DELETE FROM lake.events WHERE day < ?::DATE", [first_kept])
        c.execute("DELETE FROM lake.sessions WHERE day < ?::DATE", [first_kept])

    lake.in_transaction(con, drop)
