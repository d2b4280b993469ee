"""Crash and failure paths against a real server process: kill -9, damaged WAL, full disk."""

from __future__ import annotations

import json

import pytest
from tornado.websocket import websocket_connect

from streamdom.archive.wal import WriteAheadLog
from streamdom.testing import ServerProcess
from streamdom.wire import CloseCode
from tests.helpers import (
    TEST_SERVER_ARGS,
    Recorder,
    last_seq,
    read_until,
    record,
    run_async,
    session_events,
    watched,
)


# A long flush interval so acknowledged events live only in the WAL when the crash comes.
@pytest.mark.server_args("--flush-interval", "3600")
def test_kill_9_keeps_every_acknowledged_event_exactly_once(server: ServerProcess) -> None:
    evs = session_events(400)
    acked = 0
    resume = None

    async def go() -> None:
        nonlocal acked, resume
        rec = Recorder(server.ws, "crash")
        await rec.connect()
        resume = rec.resume
        for i in range(0, 300, 10):
            await rec.send_events(i + 1, evs[i:i + 10])
        await rec.wait_ack(300)
        acked = rec.acked
        # More in flight, unacknowledged, when the process dies.
        await rec.send_events(301, evs[300:])
        server.kill()

    run_async(go())
    assert acked >= 300
    server.start()
    got = server.get_json("/api/sessions/crash/events?meta=1")
    seqs = [g["seq"] for g in got]
    assert seqs == sorted(set(seqs)), "no duplicates, in order"
    assert seqs[:acked] == list(range(1, acked + 1)), "every acknowledged event is there"
    assert [g["event"] for g in got] == evs[:len(got)]
    assert "recovered" in server.logs()

    # The recorder resends what was not acknowledged; duplicates are dropped.
    async def resend() -> None:
        rec = Recorder(server.ws, "crash", resume=resume)  # kept across the restart
        welcome = await rec.connect()
        assert welcome["ackedSeq"] == len(got)
        await rec.send_events(acked + 1, evs[acked:])
        await rec.wait_ack(400)
        rec.close()

    run_async(resend())
    assert server.get_json("/api/sessions/crash/events") == evs
    assert server.stop() == 0
    server.start()
    assert server.get_json("/api/sessions/crash/events") == evs


def test_damaged_wal_tail_is_skipped_on_start(server: ServerProcess) -> None:
    server.stop()
    wal_dir = server.data_dir / "wal"
    from streamdom.ingest.validate import make_record

    evs = session_events(20)
    wal = WriteAheadLog(wal_dir)
    wal.write_and_sync([make_record("walsess", "a", i + 1, e, 1_700_000_000_000 + i).row() for i, e in enumerate(evs[:10])])
    wal.write_and_sync([make_record("walsess", "a", i + 11, e, 1_700_000_000_100 + i).row() for i, e in enumerate(evs[10:])])
    wal.close()
    seg = sorted(wal_dir.glob("*.wal"))[-1]
    seg.write_bytes(seg.read_bytes()[:-5])  # torn write of the second frame
    server.start()
    assert server.get_json("/api/sessions/walsess/events") == evs[:10]
    assert "skipping the tail" in server.logs()
    assert not seg.exists(), "a recovered segment is removed once its events are in Parquet"


def test_full_disk_refuses_events_with_4507(server: ServerProcess) -> None:
    server.stop()
    # More free space than any disk has: "full". A long grace period keeps the refused session
    # known (live) until the checks below, however slowly they run.
    server.args = [*TEST_SERVER_ARGS, "--min-free-mb", str(1 << 40), "--grace-seconds", "60"]
    server.start()

    async def go() -> None:
        rec = Recorder(server.ws, "full")
        welcome = await rec.connect()
        assert welcome["type"] == "welcome"
        await rec.send_events(1, session_events(3))
        msg = await rec.recv()
        assert msg["type"] == "__closed__"
        assert rec.close_code()[0] == CloseCode.STORAGE and "disk full" in rec.close_code()[1]

    run_async(go())
    health = server.get_json("/healthz")
    assert health["storage_writable"] is False
    # Nothing was acknowledged, and nothing half-stored: the session is known (a recorder said
    # hello) but holds no events.
    assert server.get_json("/api/sessions/full/events") == []


@pytest.mark.server_args("--flush-interval", "3600")  # so the events are only in the WAL at the crash
def test_any_text_survives_relay_wal_and_archive(server: ServerProcess) -> None:
    # Tabs, newlines, non-ASCII and a lone surrogate (a text cut inside an emoji) in one event:
    # relayed as sent, logged, recovered from the WAL after kill -9, archived, served the same;
    # the lone surrogate, which no UTF-8 reader can take, as U+FFFD (as a browser's TextEncoder).
    odd = ["tab\there", "line\nbreak", "é ü 漢字 😀", "cut \ud83d emoji", '"quoted" \\ back']
    evs = session_events(6)
    for i, text in enumerate(odd):
        evs[i + 1]["data"]["text"] = text
    kept = json.loads(json.dumps(evs))
    kept[4]["data"]["text"] = "cut \ufffd emoji"

    async def go() -> None:
        rec = Recorder(server.ws, "text")
        await rec.connect()
        watcher = await websocket_connect(f"{server.ws}/watch/text")
        await read_until(watcher, lambda m: m["type"] == "caughtup")
        await rec.send_events(1, evs)
        got = await read_until(watcher, lambda m: last_seq(m) == len(evs))
        assert watched(got) == kept
        await rec.wait_ack(len(evs))
        server.kill()

    run_async(go())
    server.start()
    assert server.get_json("/api/sessions/text/events") == kept


def test_leftovers_of_an_interrupted_write_are_removed_on_start(server: ServerProcess) -> None:
    # A flush killed mid-commit: its Parquet file is written, the catalog never lists it.
    evs = session_events(5)
    record(server.ws, "left", evs)
    assert server.stop() == 0
    [events_file] = list((server.data_dir / "main" / "events").glob("day=*/*.parquet"))
    orphan = events_file.with_name("ducklake-00000000-0000-7000-8000-000000000000.parquet")
    orphan.write_bytes(events_file.read_bytes())  # the same events, as a glob would count them
    server.start()
    assert not orphan.exists()
    assert "left by an interrupted write" in server.logs()
    assert server.get_json("/api/sessions/left/events") == evs
