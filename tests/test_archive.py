"""The archive in-process: real Parquet files, real DuckDB; compaction, retention, layout."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from streamdom.archive import layout, maintenance, queries
from streamdom.config import Config
from streamdom.ingest.validate import batch_of, make_record
from streamdom.web.services import Services
from tests.helpers import run_async, session_events


def make_records(sid: str, n: int, t0: int, stream: str = "a"):
    return [make_record(sid, stream, i + 1, e, t0 + i) for i, e in enumerate(session_events(n, t0))]


async def archive_with_files(tmp_path: Path, files: int, per_file: int = 40) -> tuple[Services, list]:
    """A server's services (no sockets) whose archive got `files` flushes of 3 sessions' events."""
    svc = Services(Config(data_dir=tmp_path, flush_interval=3600, compaction_interval=3600))
    await svc.start()
    producers = [await svc.bus.open_stream(f"s{s}", "a", "", "", lambda seq: None) for s in range(3)]
    recs = []
    t0 = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    for f in range(files):
        for s, producer in enumerate(producers):
            sid = f"s{s}"
            start = f * per_file + 1
            evs = session_events(per_file * files, t0)[f * per_file:(f + 1) * per_file]
            batch = [make_record(sid, "a", start + i, e, t0 + start + i) for i, e in enumerate(evs)]
            svc.bus.publish(producer, batch_of(batch))
            recs += batch
        await svc.bus.flusher.flush()
    return svc, recs


def test_flush_writes_sorted_zstd_parquet_with_an_index(tmp_path: Path) -> None:
    async def go() -> None:
        svc, recs = await archive_with_files(tmp_path, files=1)
        f = svc.archive.catalog.files()[0]
        meta = __import__("pyarrow.parquet", fromlist=["x"]).ParquetFile(f.events).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        rows = duckdb.sql(f"SELECT session_id, server_time FROM '{f.events}'").fetchall()
        assert rows == sorted(rows)
        idx = duckdb.sql(f"SELECT session_id, event_count, url FROM '{f.index}' ORDER BY 1").fetchall()
        assert idx == [(f"s{i}", 40, "http://app.test/") for i in range(3)]
        await svc.close()

    run_async(go())


def test_compaction_while_readers_query_gives_consistent_answers(tmp_path: Path) -> None:
    async def go() -> None:
        svc, recs = await archive_with_files(tmp_path, files=10)
        catalog = svc.archive.catalog
        assert len(catalog.files()) == 10
        expected = sorted((r.stream_id, r.seq) for r in recs if r.session_id == "s1")
        errors: list[str] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                with catalog.snapshot() as files:
                    found = queries.session_files(files, "s1")
                    assert found is not None
                    rows = queries.session_events(found.files, "s1", 0, None)
                got = sorted((r[0], r[1]) for r in rows)
                if got != expected:
                    errors.append(f"{len(got)} rows vs {len(expected)}")

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        await svc.bus.upkeep()
        await asyncio.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert len(catalog.files()) == 1
        on_disk = list((tmp_path / "events").glob("day=*/*.parquet"))
        assert len(on_disk) == 1, "old files are deleted once no reader holds them"
        rows, more = await svc.sessions.events("s1", 0, None)
        assert [(r[0], r[1]) for r in rows] == expected and not more
        await svc.close()

    run_async(go())


def test_retention_deletes_exactly_the_expired_days(tmp_path: Path) -> None:
    today = datetime.now(UTC).replace(hour=12)
    for age in range(0, 5):
        day = (today - timedelta(days=age)).strftime("%Y-%m-%d")
        t0 = int((today - timedelta(days=age)).timestamp() * 1000)
        ev = layout.records_table([r.row() for r in make_records(f"age{age}", 5, t0)])
        layout.write_pair(tmp_path, day, ev, layout.index_table(ev, {}), 3)

    async def go() -> None:
        svc = Services(Config(data_dir=tmp_path, retention_days=3, compaction_interval=3600))
        await svc.start()
        await svc.bus.upkeep()
        days = sorted(p.name for p in (tmp_path / "events").iterdir())
        expect = sorted(f"day={(today - timedelta(days=a)).strftime('%Y-%m-%d')}" for a in range(3))
        assert days == expect
        assert sorted(p.name for p in (tmp_path / "sessions").iterdir()) == expect
        assert sorted(f.day for f in svc.archive.catalog.files()) == [d[4:] for d in expect]
        await svc.close()

    run_async(go())


def test_expired_files_boundary() -> None:
    files = [layout.DataFile(d, Path(f"/x/{d}"), Path(f"/y/{d}"))
             for d in ("2026-01-01", "2026-01-02", "2026-01-03")]
    now = datetime(2026, 1, 3, 23, 59, tzinfo=UTC)
    assert [f.day for f in maintenance.expired_files(files, 2, now)] == ["2026-01-01"]
    assert maintenance.expired_files(files, 3, now) == []


def test_compaction_merges_files_of_like_size_so_merged_files_are_not_rewritten_each_pass(
        tmp_path: Path) -> None:
    def files(day: str, sizes: list[int]) -> list[layout.DataFile]:
        out = []
        for i, size in enumerate(sizes):
            p = tmp_path / f"{day}-{size}-{i}.parquet"
            p.write_bytes(b"x" * size)
            out.append(layout.DataFile(day, p, p))
        return out

    small, mb2 = 10_000, 2 * 1024 * 1024
    # Seven fresh flush files and one earlier merge: nothing is worth a pass yet.
    assert maintenance.compaction_groups(files("d1", [small] * 7 + [mb2]), 8) == []
    # An eighth flush file: the eight small ones merge; the earlier merge is left alone.
    d2 = files("d2", [small] * 8 + [mb2])
    assert maintenance.compaction_groups(d2, 8) == [d2[:8]]
    # Eight earlier merges of like size merge with each other; days never mix.
    d3, d4 = files("d3", [mb2] * 8 + [small] * 3), files("d4", [small] * 8)
    assert sorted(maintenance.compaction_groups(d3 + d4, 8), key=len) == [d3[:8], d4]


def test_event_reads_are_exact_while_flushes_move_events_into_parquet(tmp_path: Path) -> None:
    # Readers put a session together from the bus's unarchived rows and the archive while
    # flushes move rows from one to the other: every answer holds each event once, no gap.
    async def go() -> None:
        svc = Services(Config(data_dir=tmp_path, flush_interval=3600, compaction_interval=3600))
        await svc.start()
        producer = await svc.bus.open_stream("s", "a", "", "", lambda seq: None)
        evs = session_events(300)
        t0 = int(datetime.now(UTC).timestamp() * 1000)
        published = 0
        answers: list[tuple[int, list[int]]] = []
        done = False

        async def writer() -> None:
            nonlocal published, done
            for i in range(0, len(evs), 25):
                batch = [make_record("s", "a", i + k + 1, e, t0 + i + k)
                         for k, e in enumerate(evs[i:i + 25])]
                svc.bus.publish(producer, batch_of(batch))
                published = i + len(batch)
                await svc.bus.flusher.flush()
            done = True

        async def reader() -> None:
            while not done:
                at_least = published
                rows, more = await svc.sessions.events("s", 0, None)
                answers.append((at_least, [r[1] for r in rows]))
                await asyncio.sleep(0)

        await asyncio.gather(writer(), reader(), reader())
        assert len(svc.archive.catalog.files()) == len(evs) // 25
        assert len(answers) > 10
        for at_least, seqs in answers:
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= at_least
        rows, more = await svc.sessions.events("s", 0, None)
        assert [r[1] for r in rows] == list(range(1, len(evs) + 1)) and not more
        await svc.close()

    run_async(go())
