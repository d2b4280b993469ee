"""The archive's per-session table that the search reads (streamdom/archive/summaries.py), over a
real local DuckLake archive: kept per snapshot, advanced by what each commit adds, rebuilt when
anything else changed, and always the answer a fresh grouping of the whole index gives."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from streamdom.archive import commits, lake, maintenance, queries, summaries
from streamdom.archive.queries import SessionQuery
from streamdom.archive.reads import ArchiveReader
from streamdom.archive.wal import WriteAheadLog
from streamdom.ingest.validate import batch_of, make_record
from streamdom.records import ROW_SEQ, ROW_SESSION, ROW_STREAM, Row
from streamdom.signals import SignalTracker, by_stream
from streamdom.web.services import Services
from tests.helpers import run_async, server_config, session_events, wait_for
from tests.lake_writer import T0, rows_for

DAY_MS = 86_400_000


def custom_rows(session_id: str, first_seq: int, at: int, *events: tuple[str, dict[str, Any]]) -> list[Row]:
    """Rows of the recorder's custom events (identify, errors), one ms apart from `at`."""
    return [make_record(session_id, "tab-1", first_seq + i,
                        {"type": 5, "data": {"tag": tag, "payload": payload}, "timestamp": at + i},
                        at + i).row()
            for i, (tag, payload) in enumerate(events)]


QUERIES = [SessionQuery(), SessionQuery(q="app.test/b"), SessionQuery(q="ada"), SessionQuery(user="ada"),
           SessionQuery(traits=[("plan", "pro")]), SessionQuery(has_errors=True),
           SessionQuery(url="test/a"), SessionQuery(min_duration=100), SessionQuery(ids=["a", "b", "zz"])]


def answers(con: duckdb.DuckDBPyConnection, loc: lake.Location, version: int | None = None) -> list[Any]:
    """Every query of QUERIES at `version`, with the kept tables."""
    return [queries.search_sessions(con, q, None, version, loc) for q in QUERIES]


def fresh(con: duckdb.DuckDBPyConnection, loc: lake.Location, version: int | None = None) -> list[Any]:
    """The same, grouping the whole index again."""
    summaries.forget(loc)
    try:
        return answers(con, loc, version)
    finally:
        summaries.forget(loc)


@pytest.fixture
def archive(tmp_path: Path) -> Any:
    """A fresh local archive and a connection to it (its kept tables dropped afterwards)."""
    loc = lake.Location.local(tmp_path)
    con = lake.connect(loc)
    yield loc, con
    summaries.forget(loc)
    con.close()


def test_a_commit_after_an_answer_shows_in_the_next_one_as_a_fresh_grouping_gives_it(archive: Any) -> None:
    loc, con = archive
    commits.commit(con, rows_for("a", range(1, 11)), {})
    v1 = lake.current_version(con)
    (page, total), *_ = answers(con, loc)
    assert [s["id"] for s in page] == ["a"] and total == 1 and page[0]["event_count"] == 10
    # More of `a` (now identified, with an error) and a new session `b`, in one commit.
    commits.commit(con, [*rows_for("a", range(11, 21)), *rows_for("b", range(1, 6)),
                         *custom_rows("a", 21, T0 + 500, ("streamdom-identify", {"userId": "ada", "traits": {"plan": "pro"}}),
                                      ("streamdom-error", {"source": "error", "message": "boom", "stack": ""}))], {})
    v2 = lake.current_version(con)
    assert summaries.only(con, v1, v2, summaries.INSERTS)  # this is the advance, not a rebuild
    after = answers(con, loc)
    (page, total), *_ = after
    assert sorted(s["id"] for s in page) == ["a", "b"] and total == 2
    a = next(s for s in page if s["id"] == "a")
    assert (a["event_count"], a["user_id"], a["traits"], a["errors"]) == (22, "ada", {"plan": "pro"}, 1)
    assert [[s["id"] for s in p] for p, _ in after[1:]] == [["b"], ["a"], ["a"], ["a"], ["a"], ["a"], ["a"], ["a", "b"]]
    assert after == fresh(con, loc)
    # An older pin still reads its own snapshot.
    assert answers(con, loc, v1) == fresh(con, loc, v1)
    assert answers(con, loc, v1)[0][1] == 1


def test_after_a_merge_commits_still_advance_and_after_retention_the_table_is_rebuilt(archive: Any) -> None:
    loc, con = archive
    for d in range(3):  # one session per day
        rows = rows_for(f"d{d}", range(1, 11))
        commits.commit(con, [(*r[:5], r[5] + d * DAY_MS, *r[6:]) for r in rows], {})
    before = lake.current_version(con)
    answers(con, loc)
    con.execute("CALL ducklake_merge_adjacent_files('lake')")
    commits.commit(con, rows_for("d0", range(11, 16)), {})
    assert summaries.only(con, before, lake.current_version(con), summaries.INSERTS)
    assert answers(con, loc) == fresh(con, loc)
    maintenance.expire_snapshots(con)  # every snapshot but the latest: the next commit still advances
    commits.commit(con, rows_for("d1", range(11, 14)), {})
    assert answers(con, loc) == fresh(con, loc)
    kept = lake.current_version(con)
    maintenance.expire_days(con, "2025-11-25")  # drops d0's day (2025-11-24)
    assert not summaries.only(con, kept, lake.current_version(con), summaries.INSERTS)
    (page, total), *_ = answers(con, loc)
    assert sorted(s["id"] for s in page) == ["d1", "d2"] and total == 2
    assert answers(con, loc) == fresh(con, loc)


def extra(*rows: dict[str, Any]) -> pa.Table:
    """Rows of what the archive does not hold yet (queries.EXTRA_SCHEMA), as the read model gives them."""
    blank = {f.name: None for f in queries.EXTRA_SCHEMA}
    return pa.Table.from_pylist([{**blank, **r} for r in rows], schema=queries.EXTRA_SCHEMA)


def test_rows_not_archived_yet_are_regrouped_with_their_sessions_archived_row(archive: Any) -> None:
    loc, con = archive
    commits.commit(con, [*rows_for("a", range(1, 11)), *rows_for("old", range(1, 4))], {})
    answers(con, loc)
    pending = extra(
        {"session_id": "a", "stream_id": "tab-2", "first_server_time": T0 + 1000, "last_server_time": T0 + 2000,
         "event_count": 5, "bytes": 50, "user_id": "ada", "errors": 2, "live": None},
        {"session_id": "a", "stream_id": None, "first_server_time": T0 + 1000, "last_server_time": T0 + 2000,
         "event_count": 0, "bytes": 0, "live": True},
        {"session_id": "n", "stream_id": None, "first_server_time": T0 + 1500, "last_server_time": T0 + 1500,
         "event_count": 0, "bytes": 0, "url": "http://app.test/new", "live": True})
    page, total = queries.search_sessions(con, SessionQuery(), pending, None, loc)
    assert [s["id"] for s in page] == ["a", "n", "old"] and total == 3
    a = page[0]
    assert (a["live"], a["event_count"], a["tabs"], a["user_id"], a["errors"], a["url"]) == \
        (True, 15, 2, "ada", 2, "http://app.test/a")
    assert (a["started_at"], a["last_event_at"]) == (T0 + 10, T0 + 2000)
    for q, ids in ((SessionQuery(q="ada"), ["a"]), (SessionQuery(q="test/new"), ["n"]),
                   (SessionQuery(has_errors=True), ["a"]), (SessionQuery(live=False), ["old"]),
                   (SessionQuery(ids=["a", "old"]), ["a", "old"]), (SessionQuery(user="ada"), ["a"])):
        assert [s["id"] for s in queries.search_sessions(con, q, pending, None, loc)[0]] == ids, q
    # The kept table itself is untouched: without the rows, `a` is archived alone again.
    page, _ = queries.search_sessions(con, SessionQuery(ids=["a"]), None, None, loc)
    assert (page[0]["live"], page[0]["event_count"], page[0]["user_id"]) == (False, 10, "")


def test_sessions_by_id_before_any_table_is_kept_read_only_their_index_rows(archive: Any) -> None:
    # A player page's summary after a restart must not wait for the whole index's grouping.
    loc, con = archive
    commits.commit(con, [*rows_for("a", range(1, 11)), *rows_for("b", range(1, 4))], {})
    commits.commit(con, rows_for("a", range(11, 16)), {})
    query = SessionQuery(ids=["a", "zz"])
    by_id = queries.search_sessions(con, query, None, None, loc)
    assert summaries.at(con, loc, lake.current_version(con), build=False) is None  # nothing built
    page, total = by_id
    assert [s["id"] for s in page] == ["a"] and total == 1 and page[0]["event_count"] == 15
    answers(con, loc)  # now the table is kept: the same answer from it
    assert summaries.at(con, loc, lake.current_version(con), build=False) is not None
    assert queries.search_sessions(con, query, None, None, loc) == by_id


def test_a_session_regrouped_after_a_commit_is_counted_once(archive: Any) -> None:
    # The advance appends a session's new row and marks its old one stale (compacting only once
    # a quarter of the rows are): a search must see the new row alone.
    loc, con = archive
    commits.commit(con, [r for sid in ("a", *(f"f{i}" for i in range(9))) for r in rows_for(sid, range(1, 6))], {})
    answers(con, loc)
    for start in (6, 11):
        commits.commit(con, rows_for("a", range(start, start + 5)), {})
        table = summaries.at(con, loc, lake.current_version(con))
        assert table is not None and table["stale"].to_pylist().count(True) == start // 5  # not compacted
        page, total = queries.search_sessions(con, SessionQuery(), None, None, loc)
        assert total == 10 and [s["id"] for s in page].count("a") == 1
        assert next(s for s in page if s["id"] == "a")["event_count"] == start + 4
    assert answers(con, loc) == fresh(con, loc)


def flush(loc: lake.Location, wal: WriteAheadLog, rows: list[Row]) -> summaries.Added | None:
    """The server's flush job on these rows (WAL segments in, one commit, what the tail derived
    from them as they arrived); what it says it added."""
    wal.write_and_sync(rows)
    segments = wal.rotate()
    derived = by_stream(sorted(rows, key=lambda r: (r[ROW_SESSION], r[ROW_STREAM], r[ROW_SEQ])), SignalTracker())
    _, version, added = commits.flush_segments(loc, segments, {}, derived)
    for seg in segments:
        seg.unlink()
    assert added is None or added.version == version
    return added


def stale_rows(con: duckdb.DuckDBPyConnection, loc: lake.Location) -> int:
    """Rows of the kept table at the latest snapshot that a later row replaced: 0 after a rebuild."""
    table = summaries.at(con, loc, lake.current_version(con), build=False)
    assert table is not None
    return table["stale"].to_pylist().count(True)


def test_what_the_server_committed_advances_the_table_when_the_catalog_no_longer_can(
        archive: Any, tmp_path: Path) -> None:
    # The flusher hands back the index rows it committed; the table advances by them alone, so
    # it still advances (instead of being rebuilt) once the snapshots in between have expired
    # from the catalog, and gives what a fresh grouping gives.
    loc, con = archive
    wal = WriteAheadLog(tmp_path / "wal")
    fillers = [r for sid in (f"f{i}" for i in range(9)) for r in rows_for(sid, range(1, 4))]  # no compaction
    assert flush(loc, wal, [*rows_for("a", range(1, 11)), *rows_for("old", range(1, 4)), *fillers]) is not None
    answers(con, loc)
    commits.writer(loc).execute("SELECT 1")  # the flush job's own connection, as in the flusher process
    for rows in (
            [*rows_for("a", range(11, 21)), *rows_for("b", range(1, 6)),
             *custom_rows("a", 21, T0 + 500, ("streamdom-identify", {"userId": "ada", "traits": {"plan": "pro"}}),
                          ("streamdom-error", {"source": "error", "message": "boom", "stack": ""}))],
            [*rows_for("b", range(6, 9)),
             *(make_record("b", "tab-2", s, {"type": 3, "data": {"source": 2, "type": 2, "id": 1, "x": 1, "y": 1},
                                             "timestamp": T0 + 900 + s}, T0 + 900 + s).row() for s in range(1, 4))]):
        kept = lake.current_version(con)
        for half in (rows[:len(rows) // 2], rows[len(rows) // 2:]):  # two flushes between two lists
            added = flush(loc, wal, half)
            assert added is not None and added.rows is not None and len(added.rows)
            summaries.record(loc, added)
        maintenance.expire_snapshots(con)  # the catalog forgets every snapshot but the latest
        assert not summaries.only(con, kept, lake.current_version(con), summaries.INSERTS)
        after = answers(con, loc)
        assert stale_rows(con, loc) == 1  # `a`, then `b`: advanced, not rebuilt
        assert after == fresh(con, loc)
        answers(con, loc)  # `fresh` dropped everything kept: keep a table again
    (page, total), *_ = after
    a, b = (next(s for s in page if s["id"] == sid) for sid in ("a", "b"))
    assert (a["event_count"], a["user_id"], a["traits"], a["errors"]) == (22, "ada", {"plan": "pro"}, 1)
    assert (b["event_count"], b["tabs"], total) == (11, 2, 12)
    wal.close()


def test_a_commit_the_server_did_not_record_is_asked_of_the_catalog(archive: Any, tmp_path: Path) -> None:
    # Recorded steps must reach the version read without a gap: another writer's commit (or
    # retention) between two flushes sends the advance to the catalog, or to a rebuild.
    loc, con = archive
    wal = WriteAheadLog(tmp_path / "wal")
    flush(loc, wal, rows_for("a", range(1, 6)))
    answers(con, loc)
    summaries.record(loc, flush(loc, wal, rows_for("a", range(6, 9))))  # type: ignore[arg-type]
    commits.commit(con, rows_for("other", range(1, 4)), {})  # not recorded
    summaries.record(loc, flush(loc, wal, rows_for("b", range(1, 4))))  # type: ignore[arg-type]
    (page, total), *_ = after = answers(con, loc)
    assert sorted(s["id"] for s in page) == ["a", "b", "other"] and total == 3
    assert stale_rows(con, loc) == 1 and after == fresh(con, loc)
    answers(con, loc)
    maintenance.expire_days(con, "2025-11-25")  # retention drops every row (all on 2025-11-24)
    summaries.record(loc, flush(loc, wal, rows_for("c", range(1, 4))))  # type: ignore[arg-type]
    (page, total), *_ = after = answers(con, loc)
    assert [s["id"] for s in page] == ["c"] and total == 1
    assert stale_rows(con, loc) == 0 and after == fresh(con, loc)  # rebuilt
    wal.close()


def test_a_maintenance_pass_that_only_merged_keeps_the_table(archive: Any, tmp_path: Path) -> None:
    loc, con = archive
    wal = WriteAheadLog(tmp_path / "wal")
    for d in range(3):  # one session per day: three files to merge
        rows = rows_for(f"d{d}", range(1, 11))
        flush(loc, wal, [(*r[:5], r[5] + d * DAY_MS, *r[6:]) for r in rows])
    answers(con, loc)
    summaries.record(loc, flush(loc, wal, rows_for("d0", range(11, 16))))  # type: ignore[arg-type]
    before = summaries.at(con, loc, lake.current_version(con))
    version, added = maintenance.pass_job(loc, "2025-11-20", None)  # nothing that old: merges only
    assert added is not None and added.version == version > added.base and added.rows is None
    summaries.record(loc, added)
    maintenance.expire_snapshots(con)
    assert summaries.at(con, loc, version) is before  # the same rows: nothing regrouped or rebuilt
    assert answers(con, loc) == fresh(con, loc)
    version, added = maintenance.pass_job(loc, "2025-11-26", None)  # retention drops d0 and d1
    assert added is None
    (page, total), *_ = answers(con, loc)
    assert [s["id"] for s in page] == ["d2"] and total == 1
    wal.close()


def test_a_list_during_the_warm_up_waits_for_its_table_and_a_summary_by_id_does_not(
        archive: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A server warms its table up at a start, in a reader thread. The whole-index build is held
    # at its start here, so that the searches surely arrive before it ends.
    loc, con = archive
    commits.commit(con, [*rows_for("a", range(1, 11)), *rows_for("b", range(1, 4))], {})
    version = lake.current_version(con)
    want_list = queries.search_sessions(con, SessionQuery(), None, version)  # per connection: a fresh grouping
    want_a = queries.search_sessions(con, SessionQuery(ids=["a"]), None, version)
    entered, release = threading.Event(), threading.Event()
    builds: list[int] = []
    build = summaries._build

    def held_build(c: duckdb.DuckDBPyConnection, v: int) -> pa.Table:
        builds.append(v)
        entered.set()
        assert release.wait(60)
        return build(c, v)

    monkeypatch.setattr(summaries, "_build", held_build)

    async def go() -> None:
        reader = ArchiveReader(loc, 2)
        try:
            reader.advance(version)
            reader.warm_up()
            assert await asyncio.to_thread(entered.wait, 60)
            # A player page's summary is answered from the session's own rows meanwhile.
            assert await asyncio.wait_for(reader.search(SessionQuery(ids=["a"]), None), 30) == want_a
            listing = asyncio.ensure_future(reader.search(SessionQuery(), None))
            await asyncio.sleep(0)
            assert not listing.done()
            release.set()
            assert await asyncio.wait_for(listing, 60) == want_list
            assert builds == [version]  # the list took the warm-up's table, not a build of its own
            assert await reader.search(SessionQuery(ids=["a"]), None) == want_a  # now from the table
        finally:
            release.set()
            await asyncio.to_thread(reader.close)

    run_async(go())


def test_a_servers_flushes_advance_its_table_with_what_they_committed(tmp_path: Path) -> None:
    # The embedded server: its flusher process commits and hands back what it added; the
    # reader advances its table with that in a reader thread, before any search asks.
    async def go() -> None:
        svc = Services(server_config(tmp_path, flush_interval=3600, compaction_interval=3600))
        await svc.start()
        loc = svc.archive.location
        con = lake.connect(loc, read_only=True)
        try:
            producers: dict[str, Any] = {}
            t0 = int(time.time() * 1000) - 60_000  # within retention: maintenance drops nothing

            async def send(sid: str, first: int, n: int) -> None:
                if sid not in producers:
                    producers[sid] = await svc.bus.open_stream(sid, "tab-1", "", "", lambda seq: None)
                evs = session_events(first + n, t0)[first:first + n]
                svc.bus.publish(producers[sid], batch_of(
                    [make_record(sid, "tab-1", first + i + 1, e, t0 + first + i) for i, e in enumerate(evs)]))

            await send("a", 0, 20)
            await svc.bus.flusher.flush()
            query = SessionQuery()
            await svc.archive.search(query, None)  # builds the table
            for step in range(3):
                before = svc.archive.version
                await send("a", 20 + 10 * step, 10)
                await send(f"n{step}", 0, 5)
                await svc.bus.flusher.flush()
                version = svc.archive.version
                assert version == before + 1  # type: ignore[operator]
                assert summaries._archive(loc).added[before].version == version  # type: ignore[index]
                await asyncio.to_thread(wait_for, lambda: summaries.keeps(loc, version), 60,  # noqa: B023
                                        what="the table advanced ahead of any search")
                got = await svc.archive.search(query, None)
                assert got == queries.search_sessions(con, query, None, version)  # a fresh grouping
                assert got[1] == step + 2 and got[0][0]["event_count"] in (5, 30 + 10 * step)
            kept = summaries.at(con, loc, svc.archive.version)  # type: ignore[arg-type]
            await svc.bus.upkeep()  # merges the flushes' files: the same rows
            assert svc.archive.version > version  # type: ignore[operator]
            await asyncio.to_thread(wait_for, lambda: summaries.keeps(loc, svc.archive.version), 60)
            assert summaries.at(con, loc, svc.archive.version) is kept  # type: ignore[arg-type]
        finally:
            con.close()
            summaries.forget(loc)
            await svc.close()

    run_async(go())


def test_a_server_started_again_on_an_emptied_directory_lists_only_the_new_archive(tmp_path: Path) -> None:
    # Kept tables and recorded commits belong to the archive at a path. A new archive there
    # numbers its snapshots from the start again: what the stopped server kept must not serve it.
    async def go() -> None:
        data = tmp_path / "data"
        config = server_config(data, flush_interval=3600, compaction_interval=3600)
        t0 = int(time.time() * 1000) - 60_000
        answers = []
        servers = []
        for sid in ("old", "new"):
            shutil.rmtree(data, ignore_errors=True)
            svc = Services(config)
            servers.append(svc)  # the stopped one stays referenced, as a test or a restarting host may
            await svc.start()
            producer = await svc.bus.open_stream(sid, "tab-1", "", "", lambda seq: None)
            svc.bus.publish(producer, batch_of([make_record(sid, "tab-1", i + 1, e, t0 + i)
                                                for i, e in enumerate(session_events(5, t0))]))
            await svc.bus.flusher.flush()
            page, _ = await svc.archive.search(SessionQuery(), None)
            answers.append([s["id"] for s in page])
            await svc.close()
        assert servers[0].archive.version == servers[1].archive.version  # the same snapshot ids
        assert answers == [["old"], ["new"]]

    run_async(go())
