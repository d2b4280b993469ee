"""The server's archive in-process: real DuckLake tables, real Parquet, real DuckDB; flushes,
reads during maintenance, retention."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from streamdom.archive import commits, lake, maintenance, queries
from streamdom.archive.wal import WriteAheadLog
from streamdom.ingest.validate import batch_of, make_record
from streamdom.web.services import Services
from tests.helpers import run_async, server_config, session_events


def make_records(sid: str, n: int, t0: int, stream: str = "a"):
    return [make_record(sid, stream, i + 1, e, t0 + i) for i, e in enumerate(session_events(n, t0))]


async def archive_with_flushes(tmp_path: Path, flushes: int, per_flush: int = 40,
                               **config: object) -> tuple[Services, list]:
    """A server's services (no sockets) whose archive got `flushes` flushes of 3 sessions' events."""
    svc = Services(server_config(tmp_path, flush_interval=3600, compaction_interval=3600, **config))
    await svc.start()
    producers = [await svc.bus.open_stream(f"s{s}", "a", "", "", lambda seq: None) for s in range(3)]
    recs = []
    t0 = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    for f in range(flushes):
        for s, producer in enumerate(producers):
            start = f * per_flush + 1
            evs = session_events(per_flush * flushes, t0)[f * per_flush:(f + 1) * per_flush]
            batch = [make_record(f"s{s}", "a", start + i, e, t0 + start + i) for i, e in enumerate(evs)]
            svc.bus.publish(producer, batch_of(batch))
            recs += batch
        await svc.bus.flusher.flush()
    return svc, recs


def events_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "main" / "events").glob("day=*/*.parquet"))


def test_a_flush_commits_sorted_zstd_parquet_and_its_index(tmp_path: Path) -> None:
    async def go() -> None:
        svc, recs = await archive_with_flushes(tmp_path, flushes=1)
        [f] = events_files(tmp_path)
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"
        rows = duckdb.sql(f"SELECT session_id, server_time FROM '{f}'").fetchall()
        assert rows == sorted(rows) and len(rows) == 120
        [ix] = sorted((tmp_path / "main" / "sessions").glob("day=*/*.parquet"))
        idx = duckdb.sql(f"SELECT session_id, event_count, url FROM '{ix}' ORDER BY 1").fetchall()
        assert idx == [(f"s{i}", 40, "http://app.test/") for i in range(3)]
        assert (tmp_path / lake.CATALOG_FILE).exists()
        await svc.close()

    run_async(go())


def test_reads_during_maintenance_give_consistent_answers_and_merged_files_go_a_pass_later(
        tmp_path: Path) -> None:
    async def go() -> None:
        svc, recs = await archive_with_flushes(tmp_path, flushes=10)
        assert len(events_files(tmp_path)) == 10
        expected = sorted((r.stream_id, r.seq) for r in recs if r.session_id == "s1")
        errors: list[str] = []
        stop = threading.Event()
        loc = svc.archive.location
        version = svc.archive.version

        def reader() -> None:
            con = lake.connect(loc, read_only=True)
            while not stop.is_set():
                try:  # pinned to the version before the pass, as the server's readers are
                    got = sorted((r[0], r[1]) for r in queries.session_page(con, "s1", 0, None, version).rows)
                    latest = sorted((r[0], r[1]) for r in queries.session_page(con, "s1", 0, None).rows)
                except duckdb.Error as exc:
                    errors.append(repr(exc))
                    continue
                if got != expected or latest != expected:
                    errors.append(f"{len(got)}/{len(latest)} rows vs {len(expected)}")

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        await svc.bus.upkeep()
        await asyncio.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert len(events_files(tmp_path)) == 11, "merged away, kept until the next pass"
        await svc.bus.upkeep()
        assert len(events_files(tmp_path)) == 1
        rows, more = await svc.sessions.events("s1", 0, None)
        assert [(r[0], r[1]) for r in rows] == expected and not more
        await svc.close()

    run_async(go())


def test_retention_deletes_exactly_the_expired_days(tmp_path: Path) -> None:
    today = datetime.now(UTC).replace(hour=12)
    con = lake.connect(lake.Location.local(tmp_path))
    for age in range(0, 5):
        t0 = int((today - timedelta(days=age)).timestamp() * 1000)
        commits.commit(con, [r.row() for r in make_records(f"age{age}", 5, t0)], {})
    con.close()

    async def go() -> None:
        svc = Services(server_config(tmp_path, retention_days=3, compaction_interval=3600))
        await svc.start()
        await svc.bus.upkeep()  # drops the days: gone for readers at once
        listed = await svc.sessions.list(0, None, None, 100)
        assert sorted(s["id"] for s in listed) == ["age0", "age1", "age2"]
        await svc.bus.upkeep()  # expires the snapshots that still had them
        await svc.bus.upkeep()  # deletes their files
        expect = sorted(f"day={(today - timedelta(days=a)).strftime('%Y-%m-%d')}" for a in range(3))
        for table in ("events", "sessions"):
            assert sorted(p.name for p in (tmp_path / "main" / table).iterdir()) == expect
        await svc.close()

    run_async(go())


def test_first_kept_day_boundary() -> None:
    now = datetime(2026, 1, 3, 23, 59, tzinfo=UTC)
    assert maintenance.first_kept_day(2, now) == "2026-01-02"
    assert maintenance.first_kept_day(3, now) == "2026-01-01"


def test_event_reads_are_exact_while_flushes_move_events_into_parquet(tmp_path: Path) -> None:
    # Readers put a session together from the bus's unarchived rows and the archive while
    # flushes move rows from one to the other: every answer holds each event once, no gap.
    async def go() -> None:
        svc = Services(server_config(tmp_path, flush_interval=3600, compaction_interval=3600))
        await svc.start()
        producer = await svc.bus.open_stream("s", "a", "", "", lambda seq: None)
        evs = session_events(300)
        t0 = int(datetime.now(UTC).timestamp() * 1000)
        published = 0
        answers: list[tuple[int, list[int]]] = []
        answered = asyncio.Event()
        done = False

        async def writer() -> None:
            nonlocal published, done
            for i in range(0, len(evs), 25):
                batch = [make_record("s", "a", i + k + 1, e, t0 + i + k)
                         for k, e in enumerate(evs[i:i + 25])]
                svc.bus.publish(producer, batch_of(batch))
                published = i + len(batch)
                # One more answer before each flush however slow reads are on a busy machine
                # (the readers go on reading through the flush).
                answered.clear()
                await answered.wait()
                await svc.bus.flusher.flush()
            done = True

        async def reader() -> None:
            while not done:
                at_least = published
                rows, more = await svc.sessions.events("s", 0, None)
                answers.append((at_least, [r[1] for r in rows]))
                answered.set()
                await asyncio.sleep(0)

        await asyncio.gather(writer(), reader(), reader())
        assert len(events_files(tmp_path)) == len(evs) // 25  # one commit per flush
        assert len(answers) > 10
        for at_least, seqs in answers:
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= at_least
        rows, more = await svc.sessions.events("s", 0, None)
        assert [r[1] for r in rows] == list(range(1, len(evs) + 1)) and not more
        await svc.close()

    run_async(go())


def test_connections_to_one_archive_share_a_database_until_the_last_is_gone(tmp_path: Path) -> None:
    """A process's connections to one archive are cursors of one database (the extensions load
    once); it is closed with its last cursor, and a later connection opens a new one, however
    connections come and go across threads."""
    loc = lake.Location.local(tmp_path)
    key = (loc, lake.Tuning(), False, 1)

    def two_connections() -> lake._Shared:
        first, second = lake.connect(loc), lake.connect(loc)
        shared = lake._databases[key]
        assert shared.cursors == 2
        commits.commit(first, [r.row() for r in make_records("s1", 5, 1_700_000_000_000)], {})
        assert second.execute("SELECT count(*) FROM lake.events").fetchone()[0] == 5
        reader = lake.connect(loc, read_only=True)
        assert lake._databases[(loc, lake.Tuning(), True, 1)] is not shared  # read-only: its own
        reader.close()
        return shared

    shared = two_connections()
    assert key not in lake._databases and shared.cursors == 0

    def churn() -> None:  # what reader threads and tests do: open, query, drop, again
        for _ in range(10):
            con = lake.connect(loc)
            assert con.execute("SELECT count(*) FROM lake.events").fetchone()[0] == 5
            del con

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a connect never returned"
    assert key not in lake._databases


def test_a_flush_archives_each_logged_event_exactly_with_its_source(tmp_path: Path) -> None:
    """What a flush reads back from the log and commits: every field of every event as logged,
    across a day boundary and a hole in a stream, and `source` as the README documents it
    (NULL, not a failed flush, for a data.source no SMALLINT holds)."""
    midnight = int(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
    datas = [  # (type, data text as logged, the source column)
        (3, '{"source":2,"type":2,"id":1,"x":1,"y":2}', 2),
        (3, '{ "source" : 5 ,"text":"a\\tb","isChecked":false}', 5),  # blanks, an escaped tab
        (3, '{"source":99999,"x":1}', None),  # beyond SMALLINT: no rrweb source
        (3, '{"texts":[],"source":0}', None),  # not first: not read
        (3, '{"source":-1}', None),
        (3, '{"source":7.5}', 7),
        (2, '{"source":1,"node":{}}', None),  # not an IncrementalSnapshot
        (5, '{"tag":"x","payload":{"source":3}}', None),
    ]
    recs = []
    for i, (typ, data, _) in enumerate(datas):
        rec = make_record("src", "a", i + 1 + (i >= 4), {"type": typ, "data": {}, "timestamp": 5 + i},
                          midnight - 2 + i)  # seq 5 is missing; a day ends after the second event
        rec.data = data
        recs.append(rec)
    recs.append(make_record("other", "b", 1, {"type": 3, "data": {"source": 1}, "timestamp": 1}, midnight))

    async def go() -> None:
        svc = Services(server_config(tmp_path, flush_interval=3600, compaction_interval=3600))
        await svc.start()
        for sid, stream, batches in (("src", "a", [recs[:4], recs[4:8]]), ("other", "b", [recs[8:]])):
            producer = await svc.bus.open_stream(sid, stream, "", "", lambda seq: None)
            for part in batches:
                svc.bus.publish(producer, batch_of(part))
        await svc.bus.flusher.flush()
        glob = tmp_path / "main" / "events" / "*" / "*.parquet"
        stored = duckdb.sql(f"SELECT session_id, stream_id, seq, type, timestamp, server_time, data, extra,"
                            f" source FROM '{glob}' ORDER BY session_id DESC, seq").fetchall()
        assert stored == [(*r.row(), src) for r, src in zip(recs, [d[2] for d in datas] + [1], strict=True)]
        runs = duckdb.sql(f"SELECT session_id, min_seq, max_seq, event_count FROM "
                          f"'{tmp_path / 'main' / 'sessions' / '*' / '*.parquet'}' ORDER BY 1 DESC, 2").fetchall()
        assert runs == [("src", 1, 2, 2), ("src", 3, 4, 2), ("src", 6, 9, 4), ("other", 1, 1, 1)]
        await svc.close()

    run_async(go())


def test_flushes_and_a_starts_recovery_archive_everyone_whatever_a_meta_event_holds(tmp_path: Path) -> None:
    """A recorder's Meta event whose href is no string, or whose data is nested deeper than
    json.loads goes (ingest accepts both), made every flush raise: nothing archived any more,
    for anyone; and a start's recovery of such a log raised too. Such an href is no page URL."""
    now = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    deep = '{"href":"http://app.test/x","a":' + "[" * 5000 + "]" * 5000 + "}"
    streams = {  # session -> (the hello's url, Meta data texts)
        "number": ("", ['{"href":5,"width":1,"height":1}']),
        "object": ("http://hello.test/", ['{"href":{"a":1}}']),
        "deep": ("", [deep, '{"href":"http://app.test/after"}']),
        "fine": ("", []),
    }
    want_urls = {"number": None, "object": "http://hello.test/", "deep": "http://app.test/after",
                 "fine": "http://app.test/"}

    def records(sid: str) -> list:
        """The stream's events: its first Meta event's data is the first text given, more follow."""
        recs = make_records(sid, 4, now)
        metas = streams[sid][1]
        if metas:
            recs[0].data = metas[0]
        for i, data in enumerate(metas[1:]):
            recs.append(make_record(sid, "a", 5 + i, {"type": 4, "data": {}, "timestamp": now + 9}, now + 9))
            recs[-1].data = data
        return recs

    def archived(data_dir: Path) -> tuple[dict, dict]:
        glob = data_dir / "main"
        counts = dict(duckdb.sql(f"SELECT session_id, count(*) FROM '{glob}/events/*/*.parquet' GROUP BY 1").fetchall())
        urls = dict(duckdb.sql(f"SELECT session_id, url FROM '{glob}/sessions/*/*.parquet'").fetchall())
        return counts, urls

    want_counts = {sid: len(records(sid)) for sid in streams}

    async def flushed(data_dir: Path) -> None:
        svc = Services(server_config(data_dir, flush_interval=3600, compaction_interval=3600))
        await svc.start()
        for sid, (url, _) in streams.items():
            producer = await svc.bus.open_stream(sid, "a", url, "", lambda seq: None)
            svc.bus.publish(producer, batch_of(records(sid)))
        await svc.bus.flusher.flush()
        assert svc.bus.tail.count == 0  # all archived
        await svc.close()

    run_async(flushed(tmp_path / "flush"))
    assert archived(tmp_path / "flush") == (want_counts, want_urls)

    # The same events left in the log by a crash: the next start commits them (no hello urls).
    data_dir = tmp_path / "recover"
    wal = WriteAheadLog(data_dir / "wal")
    for sid in streams:
        wal.write_and_sync([r.row() for r in records(sid)])
    wal.close()

    async def started() -> None:
        svc = Services(server_config(data_dir, flush_interval=3600, compaction_interval=3600))
        await svc.start()
        await svc.close()

    run_async(started())
    assert archived(data_dir) == (want_counts, {**want_urls, "object": None})
