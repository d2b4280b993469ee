"""Integration: a real server (a process for the restart, else in-process), real WebSocket
recorders and watchers, real Parquet."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tornado.websocket import websocket_connect

from streamdom.ingest.acks import AckBatcher
from streamdom.testing import InProcessServer, ServerProcess
from streamdom.wire import CloseCode
from tests.helpers import (
    Recorder,
    last_seq,
    read_until,
    record,
    run_async,
    server_config,
    session_events,
    wait_for,
    watched,
)


def test_record_watch_archive_replay(server: ServerProcess) -> None:
    evs = session_events(50)

    async def go() -> None:
        rec = Recorder(server.ws, "sess-1")
        welcome = await rec.connect()
        assert welcome["type"] == "welcome" and welcome["ackedSeq"] == 0
        await rec.send_events(1, evs[:10])
        await rec.wait_ack(10)
        # A late viewer gets the backlog from the full snapshot, then live events.
        viewer = await websocket_connect(f"{server.ws}/watch/sess-1")
        frames = await read_until(viewer, lambda m: m["type"] == "caughtup")
        assert frames[0]["type"] == "hello" and frames[0]["live"] is True
        backlog = watched(frames)
        assert backlog == evs[:10]
        await rec.send_events(11, evs[10:])
        live = await read_until(viewer, lambda m: last_seq(m) == 50)
        assert watched(live) == evs[10:]
        await rec.wait_ack(50)
        rec.close()
        ended = await read_until(viewer, lambda m: m["type"] == "ended")
        assert ended[-1]["type"] == "ended"

    run_async(go())
    wait_for(lambda: server.get_json("/api/sessions")["sessions"], what="session listed")
    item = server.get_json("/api/sessions")["sessions"][0]
    assert item["id"] == "sess-1" and item["live"] is False and item["event_count"] == 50
    assert server.get_json("/api/sessions/sess-1/events") == evs
    # After a restart on the same data dir the session replays from Parquet alone.
    assert server.stop() == 0
    assert not list((server.data_dir / "wal").glob("*.wal")) or all(
        p.stat().st_size == 0 for p in (server.data_dir / "wal").glob("*.wal"))
    assert list((server.data_dir / "main" / "events").glob("day=*/*.parquet"))
    server.start()
    assert server.get_json("/api/sessions/sess-1/events") == evs
    assert server.get_json("/api/sessions")["sessions"][0]["event_count"] == 50


def test_duplicates_from_resends_are_dropped_and_reacked(app: InProcessServer) -> None:
    evs = session_events(20)

    async def go() -> None:
        rec = Recorder(app.ws, "dup", "tab-a")
        await rec.connect()
        await rec.send_events(1, evs[:15])
        await rec.wait_ack(15)
        rec.close()
        rec2 = Recorder(app.ws, "dup", "tab-a", resume=rec.resume)  # the same page, back
        welcome = await rec2.connect()
        assert welcome["ackedSeq"] == 15
        await rec2.send_events(10, evs[9:])  # overlaps 10..15
        await rec2.wait_ack(20)
        rec2.close()

    run_async(go())
    assert app.get_json("/api/sessions/dup/events") == evs
    meta = app.get_json("/api/sessions/dup/events?meta=1")
    assert [m["seq"] for m in meta] == list(range(1, 21))


def test_events_paging(app: InProcessServer) -> None:
    evs = session_events(120)

    async def go() -> None:
        rec = Recorder(app.ws, "paged")
        await rec.connect()
        await rec.send_events(1, evs[:60])
        await rec.wait_ack(60)
        # Let a flush move the first part to Parquet: the rest stays unarchived for a while.
        deadline = time.monotonic() + 10
        while not list((app.data_dir / "main" / "events").glob("day=*/*.parquet")):
            assert time.monotonic() < deadline, "no flush"
            await asyncio.sleep(0.05)
        await rec.send_events(61, evs[60:])
        await rec.wait_ack(120)
        rec.close()

    run_async(go())
    import urllib.request

    got, offset = [], 0
    while True:
        with urllib.request.urlopen(f"{app.http}/api/sessions/paged/events?limit=25&offset={offset}") as r:
            page = json.loads(r.read())
            got += page
            nxt = r.headers.get("X-Next-Offset")
        if nxt is None:
            break
        offset = int(nxt)
    assert got == evs


def test_unknown_session(app: InProcessServer) -> None:
    import urllib.error

    try:
        app.get_json("/api/sessions/nope/events")
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404
        assert json.loads(e.read())["error"]

    async def go() -> None:
        viewer = await websocket_connect(f"{app.ws}/watch/nope")
        frames = await read_until(viewer, lambda m: False)
        assert frames[-1]["type"] == "__closed__" and frames[-1]["code"] == CloseCode.UNKNOWN_SESSION

    run_async(go())


def test_frames_of_every_length_class_reach_viewers_intact(app: InProcessServer) -> None:
    # 7-bit, 16-bit and 64-bit WebSocket payload lengths: the relay writes prebuilt frames.
    sizes = [10, 200, 70_000, 300_000]
    evs = session_events(2) + [{"type": 3, "data": {"source": 0, "blob": "é" * n}, "timestamp": 5}
                               for n in sizes]

    async def go() -> None:
        rec = Recorder(app.ws, "sizes")
        await rec.connect()
        await rec.send_events(1, evs[:2])
        await rec.wait_ack(2)
        viewer = await websocket_connect(f"{app.ws}/watch/sizes")
        await read_until(viewer, lambda m: m["type"] == "caughtup")
        for i, ev in enumerate(evs[2:]):
            await rec.send_events(3 + i, [ev])
        frames = await read_until(viewer, lambda m: last_seq(m) == len(evs))
        assert watched(frames) == evs[2:]
        rec.close()

    run_async(go())


def test_updates_pushes_agree_with_the_api(app: InProcessServer) -> None:
    # A session recorded earlier (ended, out of live memory) comes back: what /updates pushes
    # about it must be what /api/sessions says, archived events included.
    evs = session_events(30)
    resume = record(app.ws, "agree", evs[:20])
    wait_for(lambda: app.get_json("/api/sessions/agree")["live"] is False, what="session ended")

    async def go() -> dict:
        updates = await websocket_connect(f"{app.ws}/updates")
        await read_until(updates, lambda m: m["type"] == "sessions")
        rec = Recorder(app.ws, "agree", resume=resume)  # the same page, back
        assert (await rec.connect())["ackedSeq"] == 20
        await rec.send_events(21, evs[20:])
        await rec.wait_ack(30)
        frames = await read_until(updates, lambda m: m["type"] == "session"
                                  and m["session"]["id"] == "agree"
                                  and m["session"]["event_count"] == 30, timeout=5)
        item = frames[-1]["session"]
        assert item["live"] is True
        assert item == app.get_json("/api/sessions/agree")
        assert item == next(s for s in app.get_json("/api/sessions")["sessions"] if s["id"] == "agree")
        rec.close()
        updates.close()
        return item

    run_async(go())


def test_a_quiet_recorder_is_acked_at_once_not_at_the_next_tick(tmp_path: Path) -> None:
    # The ack timer ticks once an hour here: only the leading-edge ack can arrive.
    srv = InProcessServer(server_config(tmp_path / "data", ack_interval=3600)).start()
    try:
        async def go() -> None:
            for sid in ("quiet-a", "quiet-b"):
                rec = Recorder(srv.ws, sid)
                await rec.connect()
                await rec.send_events(1, session_events(1))  # one event: one durable mark
                await rec.wait_ack(1, timeout=60)
                rec.close()

        run_async(go())
    finally:
        srv.stop()


class _Sink:
    def __init__(self) -> None:
        self.sent = 0

    def send_ack(self) -> None:
        self.sent += 1


def test_acks_of_a_busy_connection_wait_for_the_tick() -> None:
    batcher = AckBatcher(3600)  # never started: ticks are the explicit flush() calls
    busy, other = _Sink(), _Sink()
    batcher.due(busy)
    batcher.due(busy)
    batcher.due(busy)
    batcher.due(other)
    assert (busy.sent, other.sent) == (1, 1)  # the first of each at once, the rest wait
    batcher.flush()
    assert (busy.sent, other.sent) == (2, 1)  # one more for the one that was still due
    batcher.due(busy)  # acked at that tick: waits for the next one
    batcher.due(other)  # not acked since the tick: at once
    assert (busy.sent, other.sent) == (2, 2)
    batcher.forget(busy)  # its connection closed: nothing more for it
    batcher.flush()
    batcher.flush()
    batcher.due(other)
    assert (busy.sent, other.sent) == (2, 3)
