"""Cluster-mode parts on a real JetStream node: publisher, follower, presence, lease, archivers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import nats
from hypothesis import given
from hypothesis import strategies as st

from streamdom.archive import lake
from streamdom.archive.archiver import Archiver, LakeArchive
from streamdom.archive.lake import Location
from streamdom.bus import jetstream as J
from streamdom.bus.follower import Following, Relayed, SessionFollower
from streamdom.bus.lease import Lease
from streamdom.bus.livepath import LivePath
from streamdom.bus.presence import PresenceBoard
from streamdom.bus.publisher import StreamPublisher, start_now
from streamdom.records import Row
from streamdom.testing_nats import NatsCluster
from tests.helpers import run_async

ID_CHARS = "abcXYZ019._:@-"


@given(st.text(alphabet=ID_CHARS, min_size=1, max_size=40))
def test_ids_become_safe_tokens_and_come_back(value: str) -> None:
    """Any valid id maps to one subject token / KV key part, and back to itself."""
    tok = J.token(value)
    assert all(c.isalnum() or c in "_-" for c in tok)
    assert J.untoken(tok) == value


def test_distinct_ids_never_share_a_token() -> None:
    """The escape is injective: ids that differ only where an escape could collide stay apart."""
    ids = ["a.b", "a_2Eb", "a_b", "a:b", "a@b", "a_5Fb", "a__b", "a.2Eb"]
    assert len({J.token(i) for i in ids}) == len(ids)


def rows(sid: str, stream: str, first: int, n: int, meta_at: int | None = None) -> list[Row]:
    """n rows of one stream from seq `first`; a Meta + FullSnapshot pair at seq `meta_at`."""
    out: list[Row] = []
    for seq in range(first, first + n):
        typ = 4 if seq == meta_at else 2 if meta_at is not None and seq == meta_at + 1 else 3
        out.append((sid, stream, seq, typ, 1_700_000_000_000 + seq, 1_700_000_000_000 + seq,
                    json.dumps({"i": seq, "pad": "x" * (seq % 50)}), None))
    return out


async def _objects(cluster: NatsCluster) -> tuple[nats.aio.client.Client, J.Objects]:
    settings = J.BusSettings(tuple(cluster.urls))
    nc = await J.connect(settings, "test")
    return nc, await J.declare(nc, settings)


def test_publisher_keeps_each_stream_in_order_and_flags_snapshots(nats1: NatsCluster) -> None:
    """Rows added in bursts are stored once, in seq order per stream, acked up to the last seq;
    the batch that starts with a Meta event is flagged and reported with its stream sequence."""
    async def go() -> None:
        nc, obj = await _objects(nats1)
        durable: dict[tuple[str, str], int] = {}
        snaps: list[int] = []

        def on_durable(key: tuple[str, str], seq: int, snap: int | None) -> None:
            durable[key] = seq
            if snap is not None:
                snaps.append(snap)

        pub = StreamPublisher(obj.js, "nodeA", on_durable, lambda k: ("http://x/ü?a=1", "UA"))
        await pub.start()
        for chunk in range(20):  # 20 bursts of 10 rows per stream, a snapshot at seq 101
            for stream in ("t1", "t.2"):
                pub.add(("s:1@x", stream), rows("s:1@x", stream, chunk * 10 + 1, 10, meta_at=101))
            await asyncio.sleep(0)
        assert await pub.drain(10)
        assert durable == {("s:1@x", "t1"): 200, ("s:1@x", "t.2"): 200}
        assert pub.published_messages < 40 * 2  # bursts left as batches, not one per row
        sub = await obj.js.subscribe(J.session_subjects("s:1@x"), ordered_consumer=True)
        seen: dict[str, list[int]] = {"t1": [], "t.2": []}
        flagged = []
        for _ in range(pub.published_messages):
            msg = await sub.next_msg(5)
            sid, stream = J.parse_subject(msg.subject)
            got = J.decode_rows(sid, stream, msg.data, msg.headers.get(J.HDR_ENC) == "zstd")
            seen[stream] += [r[2] for r in got]
            if msg.headers.get(J.HDR_SNAP):
                flagged.append((msg.metadata.sequence.stream, got[0][3], msg.headers[J.HDR_URL]))
        assert seen == {"t1": list(range(1, 201)), "t.2": list(range(1, 201))}
        assert sorted(f[0] for f in flagged) == sorted(snaps)
        assert {f[1] for f in flagged} == {4}  # every flagged batch starts with the Meta
        assert all(f[2] == "http://x/%C3%BC?a=1" for f in flagged)
        await nc.close()

    run_async(go())


def test_start_now_runs_a_coroutine_at_once_and_the_rest_of_it_in_a_task() -> None:
    """start_now: a coroutine that never suspends is done on return (no turn of the loop); one
    that suspends goes on in a task, in order, and a cancellation reaches it; errors come
    through the future."""
    async def go() -> None:
        steps: list[str] = []

        async def quick() -> int:
            steps.append("quick")
            return 1

        done = start_now(quick())
        assert done.done() and done.result() == 1 and steps == ["quick"]

        async def broken() -> None:
            raise ValueError("no")

        failed = start_now(broken())
        assert failed.done() and isinstance(failed.exception(), ValueError)

        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()

        async def slow() -> str:
            steps.append("started")
            a = await first
            steps.append(a)
            b = await second
            return a + b

        task = start_now(slow())
        assert steps[-1] == "started" and not task.done()  # ran up to its first await, now
        first.set_result("x")
        await asyncio.sleep(0.01)
        assert steps[-1] == "x" and not task.done()
        second.set_result("y")
        assert await task == "xy"

        hold = loop.create_future()

        async def cancelled() -> None:
            try:
                await hold
            finally:
                steps.append("cleaned up")

        task = start_now(cancelled())
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
            raise AssertionError("not cancelled")
        except asyncio.CancelledError:
            assert steps[-1] == "cleaned up" and hold.cancelled()

    run_async(go())


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of a process is stopped (SIGSTOP delivered to all of them)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:  # a thread that just ended
            continue
        if state != "T":
            return False
    return True


def test_a_message_whose_ack_does_not_come_is_sent_again_and_stored_once(tmp_path: Path) -> None:
    """NATS frozen (SIGSTOP) past the ack timeout: the publisher sends the message again with the
    same id; once NATS runs again it is stored once and the stream is acked up to its last seq."""
    cluster = NatsCluster(tmp_path / "nats").start()
    proc = cluster.nodes[0].proc
    assert proc is not None

    async def go() -> None:
        nc, obj = await _objects(cluster)
        durable: dict[tuple[str, str], int] = {}
        pub = StreamPublisher(obj.js, "nodeA", lambda k, seq, snap: durable.__setitem__(k, seq),
                              lambda k: ("", ""))
        await pub.start()
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            # The signal takes effect when the kernel next stops each of the server's threads:
            # publish only once all are stopped, or a busy machine lets the ack out first.
            deadline = time.monotonic() + 60
            while not all_threads_stopped(proc.pid):
                assert time.monotonic() < deadline, "nats-server did not stop"
                await asyncio.sleep(0.01)
            pub.add(("frozen", "t"), rows("frozen", "t", 1, 10))
            deadline = time.monotonic() + 60
            while pub.resent < 1:  # the ack timeout passed: sent again (into the frozen server)
                assert time.monotonic() < deadline, "never sent again"
                await asyncio.sleep(0.05)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert await pub.drain(60)
        assert durable == {("frozen", "t"): 10}
        info = await obj.js.stream_info(J.STREAM, subjects_filter=J.session_subjects("frozen"))
        assert info.state.messages == 1  # the resend was a duplicate
        await nc.close()

    try:
        run_async(go())
    finally:
        cluster.stop()


def test_an_event_over_the_nats_max_payload_does_not_stall_its_stream(nats1: NatsCluster) -> None:
    """One event too big for NATS even compressed is reported and skipped; the events after it
    are stored and acked (else the recorder's stream would stall behind it for ever)."""
    async def go() -> None:
        nc, obj = await _objects(nats1)
        durable: list[int] = []
        pub = StreamPublisher(obj.js, "n", lambda k, s, snap: durable.append(s), lambda k: ("", ""))
        await pub.start()
        big = rows("big", "t", 2, 1)[0]
        big = big[:6] + (json.dumps(os.urandom(1_500_000).hex()), None)  # ~1.5 MB zstd'd
        pub.add(("big", "t"), rows("big", "t", 1, 1) + [big] + rows("big", "t", 3, 5))
        assert await pub.drain(10)
        assert durable[-1] == 7
        info = await obj.js.stream_info(J.STREAM)
        assert info.state.messages >= 2  # seq 1, then 3..7 (1 and 2 may share a cut batch)
        await nc.close()

    run_async(go())


def test_follower_starts_at_the_latest_snapshot_and_skips_its_own_node(nats1: NatsCluster) -> None:
    """A follower delivers from the latest snapshot batch on, live events after, and never the
    messages its own node published."""
    async def go() -> None:
        nc, obj = await _objects(nats1)
        snap_at: list[int] = []
        pub_b = StreamPublisher(obj.js, "nodeB", lambda k, s, snap: snap_at.append(snap) if snap else None,
                                lambda k: ("", ""))
        await pub_b.start()
        pub_a = StreamPublisher(obj.js, "nodeA", lambda k, s, snap: None, lambda k: ("", ""))
        await pub_a.start()
        pub_b.add(("S", "b"), rows("S", "b", 1, 30, meta_at=1))
        await pub_b.drain(5)
        pub_b.add(("S", "b"), rows("S", "b", 31, 30, meta_at=31))  # the latest snapshot
        pub_a.add(("S", "a"), rows("S", "a", 1, 5))  # nodeA's own: skipped by nodeA's follower
        await pub_b.drain(5)
        await pub_a.drain(5)
        await obj.snapshots.put(J.token("S"), str(max(snap_at)).encode())
        got: list[tuple[str, int]] = []
        follower = SessionFollower(obj.js, obj.snapshots, "S", "nodeA",
                                   lambda rs: got.extend((r[1], r[2]) for r in rs))
        await follower.start()
        assert got == [("b", s) for s in range(31, 61)]
        pub_b.add(("S", "b"), rows("S", "b", 61, 3))
        await pub_b.drain(5)
        for _ in range(100):
            if len(got) == 33:
                break
            await asyncio.sleep(0.02)
        assert got[30:] == [("b", 61), ("b", 62), ("b", 63)]
        await follower.stop()
        await nc.close()

    run_async(go())


def test_live_rows_come_before_the_stream_and_a_lost_one_waits_for_it(nats1: NatsCluster) -> None:
    """Node B says it follows S; node A then sends S's rows live (core NATS), before JetStream
    has them, and nothing of sessions nobody follows. After a lost live
    message nothing of that stream is taken live until the stream repairs the gap; every event
    comes once and in order; stream messages already relayed live are skipped undecoded."""
    async def go() -> None:
        nc, obj = await _objects(nats1)
        relayed = Relayed()
        got: list[tuple[str, int]] = []
        live_sessions: list[str] = []

        def take(new):  # type: ignore[no-untyped-def]
            return lambda rs: got.extend((r[1], r[2]) for r in new("S", rs))

        def on_live(sid: str, rs: list[Row]) -> None:
            live_sessions.append(sid)
            take(relayed.contiguous)(rs)

        follower = SessionFollower(obj.js, obj.snapshots, "S", "nodeB", take(relayed.fresh),
                                   relayed=relayed.high)
        await follower.start()  # nothing stored yet: caught up at once
        nc_a = await nats.connect(nats1.urls)
        reports: list[tuple[str, str, int, int]] = []
        node_a = LivePath(nc_a, "nodeA", 10.0, lambda sid, rs: None)
        node_b = LivePath(nc, "nodeB", 10.0, on_live, lambda *r: reports.append(r))
        await node_a.start()
        await node_b.start()

        async def until(pred) -> None:  # type: ignore[no-untyped-def]
            for _ in range(500):
                if pred():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"got {got}")

        await node_b.want(["S"])  # node A listens since its start() returned
        await until(lambda: node_a.wanted_by("S") == ["nodeB"])
        node_a.send(("other", "a"), rows("other", "a", 1, 2))  # nobody follows it: not sent
        node_a.send(("S", "a"), rows("S", "a", 1, 3))
        node_a.send(("S", "a"), rows("S", "a", 4, 2))
        await until(lambda: len(got) >= 5)  # JetStream holds nothing: this is the live path
        assert got == [("a", s) for s in range(1, 6)] and live_sessions == ["S", "S"]
        node_a.send(("S", "a"), rows("S", "a", 8, 3))  # 6..7 were lost: 8..10 wait for the stream
        node_a.send(("S", "b"), rows("S", "b", 1, 1))  # a new stream starts at 1: taken
        await until(lambda: ("b", 1) in got)
        assert got == [("a", s) for s in range(1, 6)] + [("b", 1)]
        pub = StreamPublisher(obj.js, "nodeA", lambda k, s, snap: None, lambda k: ("", ""))
        await pub.start()
        pub.add(("S", "a"), rows("S", "a", 1, 10))
        pub.add(("S", "b"), rows("S", "b", 1, 1))
        assert await pub.drain(10)
        await until(lambda: ("a", 10) in got)  # the stream repaired the gap
        node_a.send(("S", "a"), rows("S", "a", 11, 1))  # and the live path goes on from there
        await until(lambda: ("a", 11) in got)
        assert got == [("a", s) for s in range(1, 6)] + [("b", 1)] + [("a", s) for s in range(6, 12)]
        assert live_sessions == ["S"] * 5
        # How far S's streams are durable goes to the node following S, and only S's.
        node_a.report(lambda sid: {"a:1": (11, 42)} if sid == "S" else {"z": (1, 1)})
        await until(lambda: reports == [("S", "a:1", 11, 42)])
        # A report beyond NATS's max_payload (1 MB) goes in several messages, every line once.
        many = {f"tab-{i:06d}": (i, i) for i in range(80_000)}
        reports.clear()
        node_a.report(lambda sid: many if sid == "S" else {})
        await until(lambda: len(reports) >= len(many))
        assert reports == [("S", t, seq, sseq) for t, (seq, sseq) in many.items()]
        for x in (follower, node_a, node_b):
            await x.stop()
        await nc_a.close()
        await nc.close()

    run_async(go())


def test_after_its_history_a_follower_reads_the_stream_only_to_repair_gaps(nats1: NatsCluster) -> None:
    """Once the history is in, the session's consumer is gone: live rows are relayed as they
    come. A gap seen by a live row (lost live messages), one seen only in a recording node's
    reports (the last message before a pause was lost) and a new stream whose first rows were
    never sent live are each repaired from the stream, the held live rows relayed after the
    repaired ones, and the repair's consumer stopped: every event once, in order."""
    async def go() -> None:
        nc, obj = await _objects(nats1)
        sid = "gaps"
        pub = StreamPublisher(obj.js, "nodeA", lambda k, s, snap: None, lambda k: ("", ""))
        await pub.start()
        relayed = Relayed()
        got: list[tuple[str, int]] = []
        follow = Following(obj.js, obj.snapshots, sid, "nodeB", relayed,
                           lambda rs: got.extend((r[1], r[2]) for r in rs))

        async def until(pred) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + 60
            while not pred():
                assert time.monotonic() < deadline, f"got {got}, repairing {follow.repairing()}"
                await asyncio.sleep(0.02)

        async def store(stream: str, first: int, n: int) -> None:
            pub.add((sid, stream), rows(sid, stream, first, n))
            assert await pub.drain(10)

        await store("a", 1, 5)
        await follow.start()
        assert got == [("a", s) for s in range(1, 6)]
        assert follow.backlog._sub is None and follow.repairing() == []  # no consumer now
        follow.live(rows(sid, "a", 6, 2))  # the live path: relayed at once
        assert got[-2:] == [("a", 6), ("a", 7)]
        await store("a", 6, 5)
        follow.live(rows(sid, "a", 10, 2))  # 8..9 were lost live: 10..11 wait for them
        assert got[-1] == ("a", 7)
        await store("a", 11, 1)
        await until(lambda: got[-1] == ("a", 11) and not follow.repairing())
        await store("a", 12, 3)  # the live messages of 12..14 were lost; nothing follows
        seq, stream_seq = pub.acked[sid]["a"]
        assert seq == 14
        follow.reported("a", seq, stream_seq)  # the rows may be on their way: wait for more
        assert follow.repairing() == [] and got[-1] == ("a", 11)
        follow.reported("a", seq, stream_seq)  # a report later they are still missing
        await until(lambda: got[-1] == ("a", 14) and not follow.repairing())
        follow.reported("a", seq, stream_seq)  # relayed that far: nothing to repair
        assert follow.repairing() == [] and follow.floors["a"] == stream_seq
        await store("b", 1, 2)  # a new stream, its first rows never sent live
        follow.live(rows(sid, "b", 3, 1))
        await until(lambda: got[-1] == ("b", 3) and not follow.repairing())
        assert got == [("a", s) for s in range(1, 15)] + [("b", s) for s in range(1, 4)]
        await follow.stop()
        await pub.stop()
        await nc.close()

    run_async(go())


def test_presence_is_the_same_on_every_node_and_merges_tabs(nats1: NatsCluster) -> None:
    """Two boards (two nodes) see each other's entries; a session recorded on both is one item."""
    async def go() -> None:
        nc, obj = await _objects(nats1)
        changes: list[tuple[str, bool]] = []
        a = PresenceBoard(obj.presence, "A", lambda sid, urgent: None)
        b = PresenceBoard(obj.presence, "B", lambda sid, urgent: changes.append((sid, urgent)))
        await a.start()
        await b.start()
        base = {"id": "s.1", "live": True, "started_at": 10, "last_event_at": 20, "event_count": 5,
                "bytes": 50, "url": "u", "user_agent": "ua"}
        a.put("s.1", base)
        b.put("s.1", {**base, "started_at": 5, "last_event_at": 30, "event_count": 2})
        await a.flush()
        await b.flush()
        for _ in range(100):
            if len(a.entries.get("s.1", {})) == 2 and len(b.entries.get("s.1", {})) == 2:
                break
            await asyncio.sleep(0.02)
        sa, sb = a.summary("s.1"), b.summary("s.1")
        assert sa == sb
        assert sa is not None and sa["live"] and sa["event_count"] == 7
        assert (sa["started_at"], sa["last_event_at"], sa["nodes"]) == (5, 30, ["A", "B"])
        assert ("s.1", True) in changes  # B learnt the session started
        a.put("s.1", {**base, "live": False})
        b.put("s.1", {**base, "live": False})
        await a.flush()
        await b.flush()
        for _ in range(100):
            if not b.live("s.1"):
                break
            await asyncio.sleep(0.02)
        assert not b.live("s.1") and b.summary("s.1") is not None  # ended, still listed
        # A session started elsewhere a moment ago, before B's watch brought it: a lookup finds it.
        await b.stop()
        a.put("s:2", {**base, "id": "s:2"})
        await a.flush()
        assert b.summary("s:2") is None
        await b.lookup("s:2")
        summary = b.summary("s:2")
        assert summary is not None and summary["live"]
        await a.stop()
        await b.stop()
        await nc.close()

    run_async(go())


def test_lease_has_one_holder_and_passes_on_after_the_ttl(nats1: NatsCluster) -> None:
    """Of two contenders one holds the lease; after a release the other takes it; a holder that
    stops renewing loses it to the other once the TTL has passed."""
    async def go() -> None:
        settings = J.BusSettings(tuple(nats1.urls), lease_ttl=1.0)
        nc = await J.connect(settings, "test")
        obj = await J.declare(nc, settings)
        one, two = (Lease(obj.leases, "maintenance", h, 1.0) for h in ("one", "two"))
        assert await one.acquire()
        assert not await two.acquire()
        assert await one.acquire()  # renewal
        await one.release()
        assert await two.acquire()
        assert not await one.acquire()
        await asyncio.sleep(1.5)  # two stops renewing; the bucket's max age drops its entry
        assert not two.held()
        assert await one.acquire()
        assert not await two.acquire()
        await nc.close()

    run_async(go())


def test_two_archivers_racing_archive_every_row_once(nats1: NatsCluster, tmp_path: Path) -> None:
    """Two archivers on one consumer and one directory, with messages stored twice (a resend with
    other batch boundaries): every (session, stream, seq) lands in Parquet exactly once."""
    async def go() -> None:
        nc, obj = await _objects(nats1)
        pub = StreamPublisher(obj.js, "n", lambda k, s, snap: None, lambda k: ("http://p/", "UA"))
        await pub.start()
        for i in range(20):
            pub.add((f"s{i % 4}", "t"), rows(f"s{i % 4}", "t", (i // 4) * 50 + 1, 50, meta_at=1))
        await pub.drain(10)
        resend = StreamPublisher(obj.js, "m", lambda k, s, snap: None, lambda k: ("", ""))
        await resend.start()
        resend.add(("s0", "t"), rows("s0", "t", 20, 60))  # overlaps, different boundaries
        await resend.drain(10)
        settings = J.BusSettings(tuple(nats1.urls))
        archivers = [Archiver(settings, LakeArchive(Location.local(tmp_path / "data"), 10_000), batch=7)
                     for _ in range(2)]
        tasks = [asyncio.ensure_future(a.run()) for a in archivers]
        for _ in range(300):
            if sum(a.archived for a in archivers) >= 1000:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let a late duplicate show itself
        for a in archivers:
            a.stop.set()
        await asyncio.gather(*tasks)
        assert all(a.archived for a in archivers), "both archivers took part"
        info = await obj.js.consumer_info(J.STREAM, J.ARCHIVER)
        assert info.num_ack_pending == 0 and info.num_pending == 0
        await nc.close()

    run_async(go())
    # Through the catalog: a glob may also see files a merge (maintenance runs at once, under
    # the lease) replaced and cleanup has not deleted yet (README, data layout).
    con = lake.connect(Location.local(tmp_path / "data"))
    total, distinct = con.execute(
        "SELECT count(*), count(DISTINCT (session_id, stream_id, seq)) FROM lake.events").fetchone()
    assert (total, distinct) == (1000, 1000)
