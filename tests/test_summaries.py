"""The archive's per-session table that the search reads (streamdom/archive/summaries.py), over a
real local DuckLake archive: kept per snapshot, advanced by what each commit adds, rebuilt when
anything else changed, and always the answer a fresh grouping of the whole index gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from streamdom.archive import commits, lake, maintenance, queries, summaries
from streamdom.archive.queries import SessionQuery
from streamdom.ingest.validate import make_record
from streamdom.records import Row
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
    assert summaries._only_inserts(con, v1, v2)  # this is the advance, not a rebuild
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
    assert summaries._only_inserts(con, before, lake.current_version(con))
    assert answers(con, loc) == fresh(con, loc)
    maintenance.expire_snapshots(con)  # every snapshot but the latest: the next commit still advances
    commits.commit(con, rows_for("d1", range(11, 14)), {})
    assert answers(con, loc) == fresh(con, loc)
    kept = lake.current_version(con)
    maintenance.expire_days(con, "2025-11-25")  # drops d0's day (2025-11-24)
    assert not summaries._only_inserts(con, kept, lake.current_version(con))
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
