"""Unit tests of the per-session ring buffer."""

from __future__ import annotations

import gc

from streamdom.ingest.validate import make_record
from streamdom.live.ring import ENTRY_FRAME, ENTRY_SEQ, RingBuffer
from streamdom.wire import frame_text


def rec(seq: int, t: int, stream: str = "a", size: int = 10):
    return make_record("s", stream, seq, {"type": t, "data": {"p": "x" * size}, "timestamp": seq}, seq)


def feed(ring: RingBuffer, types: list[int], size: int = 10) -> list:
    out = [rec(i + 1, t, size=size) for i, t in enumerate(types)]
    for r in out:
        ring.keep(r)
    return out


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


def test_frame_is_encoded_once_and_reassembles_the_event() -> None:
    ev = {"type": 3, "data": {"source": 2, "x": "é"}, "timestamp": 5, "delay": 7}
    r = make_record("s", "a", 1, ev, 99)
    import json

    assert json.loads(r.event_json()) == ev
    assert json.loads(frame_text(r.frame)) == {"type": "event", "streamId": "a", "seq": 1, "recvAt": 99, "event": ev}


def test_entries_leave_the_cyclic_gc_so_full_collections_stay_short() -> None:
    ring = RingBuffer(10**9, 10**9)
    feed(ring, [4, 2] + [3] * 50)
    gc.collect()
    assert len(ring) == 52 and not any(gc.is_tracked(e) for e in ring)


def test_segments_older_than_the_age_limit_are_dropped_but_never_the_playable_one() -> None:
    ring = RingBuffer(10**9, max_age_ms=100)
    for seq, (t, at) in enumerate([(4, 0), (2, 0), (3, 50), (4, 60), (2, 60), (3, 120)], 1):
        ring.keep(make_record("s", "a", seq, {"type": t, "data": {}, "timestamp": at}, at))
    assert [e[ENTRY_SEQ] for e in ring] == [1, 2, 3, 4, 5, 6]  # the first segment ended at 50: young
    ring.keep(make_record("s", "a", 7, {"type": 3, "data": {}, "timestamp": 151}, 151))
    assert [e[ENTRY_SEQ] for e in ring] == [4, 5, 6, 7]  # now it is more than 100 ms old
    ring.keep(make_record("s", "a", 8, {"type": 3, "data": {}, "timestamp": 999}, 999))
    assert [e[ENTRY_SEQ] for e in ring] == [4, 5, 6, 7, 8]  # the latest snapshot's segment stays
