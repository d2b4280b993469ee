"""Cluster mode on real processes: nats-server, StreamDOM nodes, archivers, failures.

Each test starts its own nodes on the shared NATS fixtures (emptied after each test). Checks are
on what users see: frames a watcher receives, acks a recorder gets, rows in the archive.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import nats
from nats.js.api import DiscardPolicy
from tornado.websocket import websocket_connect

from streamdom.bus import jetstream as J
from streamdom.testing import ROOT, ServerProcess
from streamdom.testing_nats import NatsCluster
from tests.cluster import ArchiverProcess, archived_seqs, node
from tests.helpers import Recorder, last_seq, read_until, run_async, session_events, wait_for


def event_seqs(frames: list[dict]) -> list[int]:
    """Seqs of the event frames among `frames`."""
    return [f["seq"] + i for f in frames if f["type"] in ("event", "events")
            for i in range(len(f.get("events", [None])))]


async def send_until_acked(rec: Recorder, events: list[dict], first: int, timeout: float = 30) -> None:
    """Send events first..len(events) and wait for their ack."""
    await rec.send_events(first, events[first - 1:])
    await rec.wait_ack(len(events), timeout)


def test_unreachable_nats_at_start_is_a_clear_error(tmp_path: Path) -> None:
    """A node that cannot reach NATS exits at once with a message naming the servers."""
    proc = subprocess.run(
        [sys.executable, "-m", "streamdom", "--port", "0", "--data-dir", str(tmp_path),
         "--bus", "nats://127.0.0.1:9,127.0.0.1:19", "--bus-connect-timeout", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "cannot reach NATS at nats://127.0.0.1:9, nats://127.0.0.1:19" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cross_node_watch_and_kill_9_of_the_recorders_node(nats1: NatsCluster, tmp_path: Path) -> None:
    """A watcher on node B sees a session recorded on node A from its snapshot on, live; node A
    is killed with events unacked; the recorder moves to B and resends; the watcher misses
    nothing and gets nothing twice; a watcher of A reconnects to B and gets the whole session
    from its snapshot; the archive holds every event once."""
    a = node(tmp_path, "a", nats1.bus).start()
    b = node(tmp_path, "b", nats1.bus).start()
    archiver = ArchiverProcess(tmp_path, "archiver", nats1.bus).start()
    evs = session_events(300)
    sid = "kill.9:s@x"

    async def go() -> None:
        rec = Recorder(a.ws, sid)
        await rec.connect()
        await send_until_acked(rec, evs[:100], 1)
        on_a = await websocket_connect(f"{a.ws}/watch/{sid}")
        on_b = await websocket_connect(f"{b.ws}/watch/{sid}")
        frames_a = await read_until(on_a, lambda m: m["type"] == "caughtup")
        frames_b = await read_until(on_b, lambda m: m["type"] == "caughtup")
        assert event_seqs(frames_a) == event_seqs(frames_b) == list(range(1, 101))
        await rec.send_events(101, evs[100:200])  # not waiting for the ack: some stay unacked
        frames_b += await read_until(on_b, lambda m: (last_seq(m) or 0) >= 200)
        # B has the history: it reads the session from the live path now, not from the stream
        # (a consumer repairing a gap lasts until the gap is closed).
        nc = await nats.connect(nats1.urls)
        session = f"{J.SUBJECT_ROOT}.{J.token(sid)}."

        async def followers() -> list[str]:
            infos = await nc.jetstream().consumers_info(J.STREAM)
            return [c.name for c in infos if (c.config.filter_subject or "").startswith(session)]

        deadline = time.monotonic() + 60
        while await followers():
            assert time.monotonic() < deadline, "B still reads the session from the stream"
            await asyncio.sleep(0.1)
        await nc.close()
        acked = rec.acked
        a.kill()
        rec.close()
        rec = Recorder(b.ws, sid, resume=rec.resume)  # the recorder's next endpoint
        welcome = await rec.connect()
        assert acked <= welcome["ackedSeq"] <= 200
        await send_until_acked(rec, evs, welcome["ackedSeq"] + 1)  # resend, then 201..300
        frames_b += await read_until(on_b, lambda m: (last_seq(m) or 0) >= 300)
        assert event_seqs(frames_b) == list(range(1, 301))
        # The watcher that was on A reconnects to B: the session from its latest snapshot.
        again = await websocket_connect(f"{b.ws}/watch/{sid}")
        assert event_seqs(await read_until(again, lambda m: m["type"] == "caughtup")) == list(range(1, 301))
        rec.close()

    run_async(go())
    wait_for(lambda: archived_seqs(tmp_path, sid).get("s1", [])[-1:] == [300], timeout=20,
             what="archive caught up")
    assert archived_seqs(tmp_path, sid) == {"s1": list(range(1, 301))}
    b.stop()
    assert archiver.stop() == 0


def test_cross_node_watchers_get_events_before_jetstream_has_them(nats1: NatsCluster,
                                                               tmp_path: Path) -> None:
    """While JetStream refuses a session's messages, a watcher on the other node still gets its
    events live (core NATS) and the recorder gets no ack for them; once JetStream takes them the
    acks come, and the watcher and a late one have every event once, in order."""
    a = node(tmp_path, "a", nats1.bus).start()
    b = node(tmp_path, "b", nats1.bus).start()
    evs = session_events(40)

    async def stream_config(nc: nats.aio.client.Client, max_msgs: int) -> None:
        js = nc.jetstream()
        config = (await js.stream_info("SD_EVENTS")).config
        config.max_msgs, config.discard = max_msgs, DiscardPolicy.NEW
        await js.update_stream(config)

    async def go() -> None:
        nc = await nats.connect(nats1.urls)
        rec = Recorder(a.ws, "live.path")
        await rec.connect()
        await send_until_acked(rec, evs[:10], 1)
        watcher = await websocket_connect(f"{b.ws}/watch/live.path")
        frames = await read_until(watcher, lambda m: m["type"] == "caughtup")
        # Node A sends the session live once it heard B's want: wait until a batch shows up.
        live = await nc.subscribe(f"{J.LIVE_ROOT}.*")
        seq = 10
        while not live.pending_msgs:
            assert seq < 20, "node A never sent the session live"
            seq += 1
            await send_until_acked(rec, evs[:seq], seq)
            await asyncio.sleep(0.1)  # pacing only; the loop waits on the condition
        stored = (await nc.jetstream().stream_info("SD_EVENTS")).state.messages
        await stream_config(nc, stored)  # full: JetStream refuses every new message now
        await rec.send_events(seq + 1, evs[seq:30])
        frames += await read_until(watcher, lambda m: (last_seq(m) or 0) >= 30)
        assert (await nc.jetstream().stream_info("SD_EVENTS")).state.messages == stored
        await stream_config(nc, -1)
        await rec.wait_ack(30, timeout=30)  # the publisher's retries get through now
        await send_until_acked(rec, evs, 31)
        frames += await read_until(watcher, lambda m: (last_seq(m) or 0) >= 40)
        assert event_seqs(frames) == list(range(1, 41))
        late = await websocket_connect(f"{b.ws}/watch/live.path")
        assert event_seqs(await read_until(late, lambda m: m["type"] == "caughtup")) == list(range(1, 41))
        rec.close()
        await nc.close()

    run_async(go())
    a.stop()
    b.stop()


def test_sessions_of_a_killed_node_end_everywhere(nats1: NatsCluster, tmp_path: Path) -> None:
    """A node killed with -9 never says its sessions ended: after three missed heartbeats the
    other nodes end them (the watcher gets `ended`, the list says not live)."""
    args = ("--presence-heartbeat", "0.3")
    a = node(tmp_path, "a", nats1.bus, *args).start()
    b = node(tmp_path, "b", nats1.bus, *args).start()

    async def go() -> None:
        rec = Recorder(a.ws, "orphan")
        await rec.connect()
        await send_until_acked(rec, session_events(5), 1)
        watcher = await websocket_connect(f"{b.ws}/watch/orphan")
        await read_until(watcher, lambda m: m["type"] == "caughtup")
        a.kill()
        await read_until(watcher, lambda m: m["type"] == "ended", timeout=10)
        rec.close()

    run_async(go())
    assert [x["live"] for x in b.get_json("/api/sessions")["sessions"] if x["id"] == "orphan"] == [False]
    b.stop()


def test_list_is_the_same_on_every_node(nats1: NatsCluster, tmp_path: Path) -> None:
    """A session recorded on A is live in /api/sessions of A and B alike, then ended on both;
    B's /updates pushes the start and the end as they happen."""
    a = node(tmp_path, "a", nats1.bus).start()
    b = node(tmp_path, "b", nats1.bus).start()

    def listed(s: ServerProcess) -> list[bool]:
        return [x["live"] for x in s.get_json("/api/sessions")["sessions"] if x["id"] == "listed"]

    async def go() -> None:
        updates = await websocket_connect(f"{b.ws}/updates")
        await read_until(updates, lambda m: m["type"] == "sessions")
        rec = Recorder(a.ws, "listed")
        await rec.connect()
        await send_until_acked(rec, session_events(5), 1)
        await read_until(updates, lambda m: m.get("session", {}).get("id") == "listed"
                         and m["session"]["live"])
        for srv in (a, b):
            wait_for(lambda s=srv: listed(s) == [True], what="live everywhere")
            # No archiver runs: the events come from the stream's unarchived tail.
            assert [e["data"] for e in srv.get_json("/api/sessions/listed/events")] == \
                [e["data"] for e in session_events(5)]
        rec.close()
        await read_until(updates, lambda m: m.get("session", {}).get("id") == "listed"
                         and not m["session"]["live"], timeout=15)

    run_async(go())
    for srv in (a, b):
        wait_for(lambda s=srv: listed(s) == [False], timeout=15, what="ended everywhere")
    a.stop()
    b.stop()


def test_nats_unreachable_later_refuses_ingest_and_loses_nothing(nats1: NatsCluster,
                                                                 tmp_path: Path) -> None:
    """With NATS down, ingest closes recorders with 4507 and acks nothing new; once NATS is back
    the recorder reconnects, resends, and every event is stored once."""
    a = node(tmp_path, "a", nats1.bus).start()
    evs = session_events(60)

    async def go() -> None:
        rec = Recorder(a.ws, "outage")
        await rec.connect()
        await send_until_acked(rec, evs[:20], 1)
        nats1.nodes[0].kill()
        # Refused once NATS has been gone for the reconnect grace (3 s). Until then each resend
        # is re-acked at 20 at once (the ack of a connection not acked since the last tick).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await rec.send_events(21, evs[20:40])
            try:
                msg = await rec.recv(timeout=0.2)
            except TimeoutError:
                continue
            if msg["type"] == "__closed__":
                break
        assert rec.close_code()[0] == 4507
        assert rec.acked == 20
        nats1.nodes[0].start()
        for _ in range(100):
            rec = Recorder(a.ws, "outage", resume=rec.resume)
            welcome = await rec.connect()
            if welcome["type"] == "welcome":
                try:
                    await send_until_acked(rec, evs, welcome["ackedSeq"] + 1, timeout=5)
                    break
                except ConnectionError:
                    pass
            await asyncio.sleep(0.2)
        assert rec.acked == 60
        rec.close()
        nc = await nats.connect(nats1.urls)
        info = await nc.jetstream().stream_info("SD_EVENTS")
        sub = await nc.jetstream().subscribe("sd.ev.outage.s1", ordered_consumer=True)
        seqs: list[int] = []
        for _ in range(info.state.messages):
            m = await sub.next_msg(5)
            first, last = map(int, m.headers["Sd-Seq"].split("-"))
            seqs += range(first, last + 1)
        assert sorted(seqs) == list(range(1, 61)) and len(seqs) == len(set(seqs))
        await nc.close()

    run_async(go())
    a.stop()


def test_kill_of_the_nats_stream_leader(nats3: NatsCluster, tmp_path: Path) -> None:
    """R3 stream: killing its leader pauses acks; the recorder keeps sending, nothing is lost or
    duplicated for the watcher on the other node nor in the archive."""
    a = node(tmp_path, "a", nats3.bus, "--bus-replicas", "3").start()
    b = node(tmp_path, "b", nats3.bus, "--bus-replicas", "3").start()
    archiver = ArchiverProcess(tmp_path, "archiver", nats3.bus, "--bus-replicas", "3").start()
    evs = session_events(400)

    async def leader() -> str:
        nc = await nats.connect(nats3.urls)
        info = await nc.jetstream().stream_info("SD_EVENTS")
        await nc.close()
        return info.cluster.leader

    async def go() -> None:
        rec = Recorder(a.ws, "leader")
        await rec.connect()
        await send_until_acked(rec, evs[:50], 1)
        watcher = await websocket_connect(f"{b.ws}/watch/leader")
        frames = await read_until(watcher, lambda m: m["type"] == "caughtup")
        name = await leader()
        for seq in range(51, 401):
            await rec.send_events(seq, [evs[seq - 1]])
            if seq == 100:
                nats3.node(name).kill()
            await asyncio.sleep(0.01)
        await rec.wait_ack(400, timeout=60)
        frames += await read_until(watcher, lambda m: (last_seq(m) or 0) >= 400, timeout=30)
        assert event_seqs(frames) == list(range(1, 401))
        rec.close()

    run_async(go())
    wait_for(lambda: archived_seqs(tmp_path, "leader").get("s1", [])[-1:] == [400], timeout=30,
             what="archive caught up")
    assert archived_seqs(tmp_path, "leader") == {"s1": list(range(1, 401))}
    for p in (a, b):
        p.stop()
    archiver.stop()


def test_restart_of_everything(nats1: NatsCluster, tmp_path: Path) -> None:
    """Stop every node, the archiver and NATS; start them again: the recorder is told what is
    durable, resumes, and the archive holds every event once."""
    a = node(tmp_path, "a", nats1.bus).start()
    archiver = ArchiverProcess(tmp_path, "archiver", nats1.bus).start()
    evs = session_events(120)

    async def first() -> tuple[int, str | None]:
        rec = Recorder(a.ws, "restart")
        await rec.connect()
        await send_until_acked(rec, evs[:80], 1)
        rec.close()
        return rec.acked, rec.resume

    acked, resume = run_async(first())
    assert acked == 80
    assert a.stop() == 0
    assert archiver.stop() == 0
    nats1.nodes[0].stop()
    nats1.nodes[0].start()
    nats1.revive()
    a.start()
    archiver.start()

    async def second() -> None:
        rec = Recorder(a.ws, "restart", resume=resume)  # the secret holds across the restart
        welcome = await rec.connect()
        assert welcome["ackedSeq"] == 80
        await send_until_acked(rec, evs, 81)
        rec.close()

    run_async(second())
    wait_for(lambda: archived_seqs(tmp_path, "restart").get("s1", [])[-1:] == [120], timeout=20,
             what="archive caught up")
    assert archived_seqs(tmp_path, "restart") == {"s1": list(range(1, 121))}
    a.stop()
    archiver.stop()


def test_kill_9_of_an_archiver(nats1: NatsCluster, tmp_path: Path) -> None:
    """An archiver killed mid-stream leaves messages taken and not acked; after the redelivery
    delay another archiver gets them: every event archived once, whatever was committed before."""
    a = node(tmp_path, "a", nats1.bus).start()
    first = ArchiverProcess(tmp_path, "first", nats1.bus, "--redeliver-after", "2",
                            "--batch", "50").start()
    evs = session_events(1000)

    async def go() -> None:
        rec = Recorder(a.ws, "arch.kill")
        await rec.connect()
        for seq in range(1, 1001, 100):
            await rec.send_events(seq, evs[seq - 1:seq + 99])
            if seq == 501:
                first.kill()
        await rec.wait_ack(1000)
        rec.close()

    run_async(go())
    second = ArchiverProcess(tmp_path, "second", nats1.bus, "--redeliver-after", "2").start()
    wait_for(lambda: len(archived_seqs(tmp_path, "arch.kill").get("s1", [])) >= 1000, timeout=30,
             what="archive caught up")
    time.sleep(0.5)  # a duplicate would show up by now
    assert archived_seqs(tmp_path, "arch.kill") == {"s1": list(range(1, 1001))}
    a.stop()
    second.stop()


def test_workers_share_one_port(nats1: NatsCluster, tmp_path: Path) -> None:
    """`--workers 2`: one port, two nodes; watchers land on either and all see every event.
    `--archiver`: one of the workers archives the stream, every event once."""
    srv = node(tmp_path, "w", nats1.bus, "--workers", "2", "--archiver").start()
    evs = session_events(50)

    async def go() -> None:
        rec = Recorder(srv.ws, "workers")
        await rec.connect()
        await send_until_acked(rec, evs[:10], 1)
        watchers = [await websocket_connect(f"{srv.ws}/watch/workers") for _ in range(6)]
        frames = [await read_until(w, lambda m: m["type"] == "caughtup") for w in watchers]
        await send_until_acked(rec, evs, 11)
        for w, f in zip(watchers, frames, strict=True):
            f += await read_until(w, lambda m: (last_seq(m) or 0) >= 50)
            assert event_seqs(f) == list(range(1, 51))
        rec.close()

    run_async(go())
    nodes = {line.split("cluster node ")[1].split()[0] for line in srv.logs().splitlines()
             if "cluster node " in line}
    assert len(nodes) == 2
    wait_for(lambda: len(archived_seqs(tmp_path, "workers").get("s1", [])) >= 50, timeout=30,
             what="archive caught up")
    assert archived_seqs(tmp_path, "workers") == {"s1": list(range(1, 51))}
    assert srv.logs().count(": consuming SD_EVENTS") == 1  # one archiver, not one per worker
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 30
