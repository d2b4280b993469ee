"""Unit tests of the per-session ring buffer."""

from __future__ import annotations

import gc
import json

from streamdom.ingest.frames import parse_frame
from streamdom.ingest.validate import batch_of, make_batches, make_record, parse_events
from streamdom.live.ring import ENTRY_FRAME, ENTRY_SEQ, RingBuffer
from streamdom.wire import frame_text


def rec(seq: int, t: int, stream: str = "a", size: int = 10):
    return make_record("s", stream, seq, {"type": t, "data": {"p": "x" * size}, "timestamp": seq}, seq)


def feed(ring: RingBuffer, types: list[int], size: int = 10) -> list:
    """One event per batch (as from a recorder that sends each on its own)."""
    out = [rec(i + 1, t, size=size) for i, t in enumerate(types)]
    for r in out:
        ring.keep(batch_of([r]))
    return out


def feed_batches(ring: RingBuffer, batches: list[list[int]]) -> None:
    seq = 0
    for types in batches:
        ring.keep(batch_of([rec(seq + i + 1, t) for i, t in enumerate(types)]))
        seq += len(types)


def test_backlog_starts_at_latest_meta_and_snapshot() -> None:
    ring = RingBuffer(10**9, 10**9)
    feed(ring, [4, 2, 3, 3, 4, 2, 3])
    assert [e[ENTRY_SEQ] for e in ring.backlog()] == [5, 6, 7]
    assert len(ring) == 7  # under budget: older segment kept for rewinds


def test_backlog_ignores_a_meta_whose_snapshot_has_not_arrived() -> None:
    ring = RingBuffer(10**9, 10**9)
    feed(ring, [4, 2, 3, 4])
    assert [e[ENTRY_SEQ] for e in ring.backlog()] == [1, 2, 3, 4]


def test_budget_drops_old_segments_but_never_the_latest_playable_one() -> None:
    ring = RingBuffer(max_bytes=1, max_age_ms=10**9)
    feed(ring, [4, 2, 3, 3, 4, 2, 3, 3, 3], size=1000)
    assert [e[ENTRY_SEQ] for e in ring] == [5, 6, 7, 8, 9]
    assert [e[ENTRY_SEQ] for e in ring.backlog()] == [5, 6, 7, 8, 9]
    assert ring.nbytes == sum(len(e[ENTRY_FRAME]) for e in ring)


def test_snapshot_without_meta_starts_a_segment() -> None:
    ring = RingBuffer(10**9, 10**9)
    feed(ring, [4, 2, 3, 2, 3])
    assert [e[ENTRY_SEQ] for e in ring.backlog()] == [4, 5]


def test_batches_keep_one_frame_each_and_frames_are_cut_at_snapshots() -> None:
    ring = RingBuffer(10**9, 10**9)
    feed_batches(ring, [[4, 2], [3, 3], [4], [2, 3], [3]])
    assert [e[ENTRY_SEQ] for e in ring.backlog()] == [5, 6, 8]
    # A frame holding a checkout after a click is cut before the Meta; the backlog starts there.
    span = parse_events(parse_frame(json.dumps({"type": "events", "seq": 9, "events": [
        {"type": t, "data": {}, "timestamp": 1} for t in (3, 4, 2, 3)]})))[1]
    batches = make_batches("s", "a", 9, span, 0, 1)
    assert [[r.seq for r in b.records] for b in batches] == [[9], [10, 11, 12]]
    for b in batches:
        ring.keep(b)
    assert [e[ENTRY_SEQ] for e in ring.backlog()] == [10]


def test_frame_is_encoded_once_and_reassembles_the_events() -> None:
    ev = {"type": 3, "data": {"source": 2, "x": "é"}, "timestamp": 5, "delay": 7}
    r = make_record("s", "a", 1, ev, 99)
    assert json.loads(r.event_json()) == ev
    assert json.loads(frame_text(batch_of([r]).frame)) == {
        "type": "event", "streamId": "a", "seq": 1, "recvAt": 99, "event": ev}
    r2 = make_record("s", "a", 2, ev, 99)
    assert json.loads(frame_text(batch_of([r, r2]).frame)) == {
        "type": "events", "streamId": "a", "seq": 1, "recvAt": 99, "events": [ev, ev]}


def test_entries_leave_the_cyclic_gc_so_full_collections_stay_short() -> None:
    ring = RingBuffer(10**9, 10**9)
    feed(ring, [4, 2] + [3] * 50)
    gc.collect()
    assert len(ring) == 52 and not any(gc.is_tracked(e) for e in ring)


def test_segments_older_than_the_age_limit_are_dropped_but_never_the_playable_one() -> None:
    ring = RingBuffer(10**9, max_age_ms=100)
    for seq, (t, at) in enumerate([(4, 0), (2, 0), (3, 50), (4, 60), (2, 60), (3, 120)], 1):
        ring.keep(batch_of([make_record("s", "a", seq, {"type": t, "data": {}, "timestamp": at}, at)]))
    assert [e[ENTRY_SEQ] for e in ring] == [1, 2, 3, 4, 5, 6]  # the first segment ended at 50: young
    ring.keep(batch_of([make_record("s", "a", 7, {"type": 3, "data": {}, "timestamp": 151}, 151)]))
    assert [e[ENTRY_SEQ] for e in ring] == [4, 5, 6, 7]  # now it is more than 100 ms old
    ring.keep(batch_of([make_record("s", "a", 8, {"type": 3, "data": {}, "timestamp": 999}, 999)]))
    assert [e[ENTRY_SEQ] for e in ring] == [4, 5, 6, 7, 8]  # the latest snapshot's segment stays
