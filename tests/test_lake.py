"""The DuckLake archive against real services: SeaweedFS S3 and PostgreSQL, and a local one.

Several archivers at once, kill -9 between commit and ack, readers during compaction,
retention: every event exactly once, every time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import duckdb
import pytest

from streamdom.archive import commits, lake, maintenance, queries
from streamdom.config import S3Credentials
from streamdom.records import ROW_SERVER_TIME as SERVER_TIME
from streamdom.testing import ROOT
from streamdom.testing_archive import SeaweedS3
from tests.lake_writer import rows_for


@pytest.fixture
def s3_lake(seaweed: SeaweedS3, pg_url: str) -> lake.Location:
    """A fresh archive: data under its own S3 prefix, catalog in its own PostgreSQL database."""
    prefix = f"s3://streamdom/t-{uuid.uuid4().hex[:8]}"
    return lake.Location(prefix, pg_url, seaweed.endpoint, S3Credentials.from_environment(seaweed.env()))


def writer(loc: lake.Location, env: dict[str, str], *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    """A tests.lake_writer process (an archiver's commit-then-ack loop) on this archive."""
    cmd = [sys.executable, "-m", "tests.lake_writer", "--data-path", loc.data_path,
           "--catalog", loc.catalog, *(["--s3-endpoint", loc.s3_endpoint] if loc.s3_endpoint else []),
           *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)


def counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """(rows, distinct (session, stream, seq), events the index counts)."""
    return con.execute("""SELECT (SELECT count(*) FROM lake.events),
                                 (SELECT count(DISTINCT (session_id, stream_id, seq)) FROM lake.events),
                                 (SELECT sum(event_count) FROM lake.sessions)""").fetchone()


def test_a_commit_skips_what_is_archived_and_repeats_within_the_batch(tmp_path: Path) -> None:
    con = lake.connect(lake.Location.local(tmp_path))
    rows = rows_for("s1", range(1, 101))
    assert commits.commit(con, rows[:40] + rows[60:70], {("s1", "tab-1"): ("http://hello/", "UA")}) == 50
    assert commits.commit(con, rows + rows[::-1], {}) == 50  # the holes 41-60 and 71-100, once each
    assert commits.commit(con, rows, {}) == 0
    assert counts(con) == (100, 100, 100)
    page = queries.session_page(con, "s1", 0, None)
    assert page.total == 100
    (summary,), _ = queries.search_sessions(con, queries.SessionQuery(ids=["s1"]), None)
    assert summary["event_count"] == 100 and summary["url"] == "http://hello/"
    assert [r[1] for r in page.rows] == list(range(1, 101))
    assert page.stream_highs == {"tab-1": 100}
    assert queries.stream_high_seqs(con, [("s1", "tab-1")]) == {("s1", "tab-1"): 100}


def test_rows_a_writer_inlined_into_the_catalog_are_read(tmp_path: Path) -> None:
    """A writer with inlining on (as one that attached before the options existed had) puts small
    commits in the catalog; session pages see them, and once flushed to files, read those."""
    loc = lake.Location.local(tmp_path)
    con = lake.connect(loc)
    commits.commit(con, rows_for("s1", range(1, 41)), {})
    inlining = lake.connect(loc, lake.Tuning(inlining_rows=10))
    commits.commit(inlining, rows_for("s1", range(41, 46)), {})
    for table in ("events", "sessions"):  # the catalog's option says 0 again, while 5 rows are inlined
        con.execute(f"CALL lake.set_option('data_inlining_row_limit', 0, table_name => '{table}')")
    assert lake.inlined_rows(con, queries.latest_version(con)) > 0
    assert [r[1] for r in queries.session_page(con, "s1", 0, None).rows] == list(range(1, 46))
    inlining.execute("CALL ducklake_flush_inlined_data('lake')")
    assert lake.inlined_rows(con, queries.latest_version(con)) == 0
    assert [r[1] for r in queries.session_page(con, "s1", 0, None).rows] == list(range(1, 46))


def test_two_archivers_writing_at_once_store_every_event_once(s3_lake: lake.Location, seaweed: SeaweedS3) -> None:
    # Both get every batch (as two archivers do when a message is redelivered to the other),
    # in different sizes and opposite orders, so their commits overlap all the time.
    a = writer(s3_lake, seaweed.env(), "--sessions", "a,b", "--last", "400", "--batch", "37")
    b = writer(s3_lake, seaweed.env(), "--sessions", "a,b", "--last", "400", "--batch", "53", "--reverse")
    outs = [p.communicate(timeout=240) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    new = sum(int(line.split()[2]) for out, _ in outs for line in out.splitlines()
              if line.startswith("committed"))
    assert new == 800
    con = lake.connect(s3_lake, read_only=True)
    assert counts(con) == (800, 800, 800)
    # Nothing in the catalog: analysts' Parquet globs see every row (each writer, however late it
    # attached, writes files), and the player's page reads them.
    assert lake.inlined_rows(con, queries.latest_version(con)) == 0
    assert [r[1] for r in queries.session_page(con, "b", 0, None).rows] == list(range(1, 401))


def test_kill_9_between_commit_and_ack_archives_nothing_twice(s3_lake: lake.Location, seaweed: SeaweedS3) -> None:
    p = writer(s3_lake, seaweed.env(), "--sessions", "k", "--last", "120", "--batch", "50",
               "--hold-before-ack", stdin=True)
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline().strip() == "committed 1-50 50"
    p.stdin.write("\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "acked 1-50"
    assert p.stdout.readline().strip() == "committed 51-100 50"
    p.kill()  # SIGKILL: committed, never acked
    p.wait()
    # The bus redelivers the unacked batch (51-100) to the next archiver, then the rest.
    q = writer(s3_lake, seaweed.env(), "--sessions", "k", "--first", "51", "--last", "120", "--batch", "50")
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert out.splitlines()[0] == "committed 51-100 0"
    assert out.splitlines()[2] == "committed 101-120 20"
    con = lake.connect(s3_lake, read_only=True)
    assert counts(con) == (120, 120, 120)


def test_readers_during_compaction_always_see_every_event_once(s3_lake: lake.Location) -> None:
    con = lake.connect(s3_lake)
    for start in range(1, 301, 20):  # 15 commits: 15 small files per table
        commits.commit(con, rows_for("r", range(start, start + 20)), {})
    files_before = len(lake.data_files(con))
    errors: list[str] = []
    stop = threading.Event()
    checked = [0]

    def reader() -> None:
        rcon = lake.connect(s3_lake, read_only=True)
        while not stop.is_set():
            got = counts(rcon)
            page = queries.session_page(rcon, "r", 0, None)
            seqs = [r[1] for r in page.rows]
            if got != (300, 300, 300) or seqs != list(range(1, 301)) or page.total != 300:
                errors.append(f"{got} {len(seqs)}")
            checked[0] += 1
        rcon.close()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        maintenance.maintain(con)  # merge; replaced files stay for running readers until the next pass
        while checked[0] < 6:
            stop.wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert len(lake.data_files(con)) < files_before
    assert counts(con) == (300, 300, 300)


def test_reads_at_an_older_snapshot_see_exactly_it_after_a_merge_and_a_delete(tmp_path: Path) -> None:
    # Point reads scan a snapshot's files themselves (queries.snapshot_files); a merged file
    # also serves older snapshots, holding rows committed after them, which must stay unseen.
    con = lake.connect(lake.Location.local(tmp_path))
    versions = []
    for start in (1, 21, 41):
        commits.commit(con, rows_for("p", range(start, start + 20)), {})
        versions.append(lake.current_version(con))
    con.execute("CALL ducklake_merge_adjacent_files('lake')")
    first = queries.snapshot_files(con, versions[0])
    assert first.tables is not None
    assert any(f.partial_max and f.partial_max > versions[0] for f in first.tables["events"])
    for n, version in zip((20, 40, 60), versions, strict=True):
        page = queries.session_page(con, "p", 0, None, version)
        assert [r[1] for r in page.rows] == list(range(1, n + 1)) and page.total == n
        assert page.stream_highs == {"tab-1": n}
        assert queries.stream_high_seqs(con, [("p", "tab-1")], version) == {("p", "tab-1"): n}
        assert [r[1] for r in queries.session_page(con, "p", 5, 10, version).rows] == list(range(6, 16))
    # A row deleted inside a file (only DuckLake applies delete files): read through DuckLake.
    con.execute("DELETE FROM lake.events WHERE session_id = 'p' AND seq = 7")
    assert queries.snapshot_files(con, None).tables is None
    assert [r[1] for r in queries.session_page(con, "p", 0, None).rows] == [*range(1, 7), *range(8, 61)]
    assert queries.stream_high_seqs(con, None, versions[0]) == {("p", "tab-1"): 20}


def test_a_glob_sees_replaced_files_until_cleanup_and_counts_once_with_distinct(tmp_path: Path) -> None:
    con = lake.connect(lake.Location.local(tmp_path))
    for start in range(1, 101, 10):
        commits.commit(con, rows_for("g", range(start, start + 10)), {})
    glob = f"read_parquet('{tmp_path}/main/events/*/*.parquet', hive_partitioning = true)"

    def glob_counts() -> tuple[int, int]:
        return duckdb.sql(f"SELECT count(*), count(DISTINCT (session_id, stream_id, seq)) FROM {glob}").fetchone()

    assert glob_counts() == (100, 100)
    maintenance.maintain(con)  # merged; the originals stay for running readers until the next pass
    assert glob_counts() == (200, 100)
    maintenance.maintain(con)
    assert glob_counts() == (100, 100)


def test_retention_deletes_exactly_the_expired_days(tmp_path: Path) -> None:
    con = lake.connect(lake.Location.local(tmp_path))
    day_ms = 86_400_000
    for d in range(5):  # one session per day, 2025-11-24 .. 2025-11-28
        rows = rows_for(f"d{d}", range(1, 11))
        commits.commit(con, [(*r[:SERVER_TIME], r[SERVER_TIME] + d * day_ms, *r[SERVER_TIME + 1:]) for r in rows], {})
    maintenance.maintain(con, "2025-11-26")
    maintenance.maintain(con, "2025-11-26")  # the next pass deletes the files
    kept = ["2025-11-26", "2025-11-27", "2025-11-28"]
    for table in ("events", "sessions"):
        assert [str(r[0]) for r in con.execute(f"SELECT DISTINCT day FROM lake.{table} ORDER BY 1").fetchall()] == kept
        on_disk = sorted(p.parent.name for p in (tmp_path / "main" / table).glob("day=*/*.parquet"))
        assert sorted(set(on_disk)) == [f"day={d}" for d in kept]
    assert counts(con) == (30, 30, 30)


def test_s3_credentials_come_from_the_environment_and_are_never_shown(seaweed: SeaweedS3, pg_url: str) -> None:
    wrong = S3Credentials.from_environment({"AWS_ACCESS_KEY_ID": "wrong", "AWS_SECRET_ACCESS_KEY": "nope-secret"})
    con = lake.connect(lake.Location("s3://streamdom/creds", pg_url, seaweed.endpoint, wrong))
    with pytest.raises(duckdb.Error) as info:
        commits.commit(con, rows_for("c", range(1, 3)), {})
    assert "nope-secret" not in str(info.value)
    creds = lake.S3Credentials.from_environment(seaweed.env())
    assert seaweed.env()["AWS_SECRET_ACCESS_KEY"] not in repr(creds) + repr(
        lake.Location("s3://x", pg_url, None, creds))
    con = lake.connect(lake.Location("s3://streamdom/creds", pg_url, seaweed.endpoint, creds))
    assert commits.commit(con, rows_for("c", range(1, 3)), {}) == 2
