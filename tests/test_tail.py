"""The log's tail (streamdom/archive/tail.py) reads its rows' figures lazily, in batches: what it
shows whenever it is asked (a summary, a flush's mark and signals) is what reading every row
at once, as it arrived, gives."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from streamdom.archive.tail import CATCH_UP, LogTail
from streamdom.records import ROW_DATA, ROW_SEQ, ROW_SERVER_TIME, ROW_SESSION, ROW_STREAM, Row
from streamdom.signals import _COMPACT, _SOURCE, Signals, SignalTracker

T0 = 1_700_000_000_000


def data_text(data: dict[str, Any], rng: random.Random) -> str:
    """JSON as a recorder sends it, or (now and then) with blanks JSON allows."""
    if rng.random() < 0.2:
        return json.dumps(data, separators=(" , ", " : ")).replace("{", "{ ", 1)
    return json.dumps(data, separators=(",", ":"))


def session_rows(sid: str, stream: str, n: int, rng: random.Random) -> list[Row]:
    """A stream's rows: page loads, snapshots, mutations, moves, clicks (bursts, far apart,
    answered or not), custom events: what the signals read."""
    rows: list[Row] = []
    ts = T0
    for seq in range(1, n + 1):
        ts += rng.choice((5, 40, 300, 1200))
        kind = rng.random()
        if seq == 1 or kind < 0.02:
            typ, data = 4, {"href": f"http://app.test/{sid}/{seq}", "width": 800, "height": 600}
        elif kind < 0.04:
            typ, data = 2, {"node": {"type": 0, "childNodes": [], "id": 1}}
        elif kind < 0.3:
            x, y = rng.choice((10, 12, 300)), rng.choice((10, 14, 500))
            typ, data = 3, {"source": 2, "type": rng.choice((2, 2, 2, 1)), "id": 5, "x": x, "y": y,
                            **({"text": f"button {seq % 3}"} if rng.random() < 0.5 else {})}
        elif kind < 0.36:
            typ, data = 5, rng.choice((
                {"tag": "streamdom-error", "payload": {"message": "x"}},
                {"tag": "streamdom-console", "payload": {"level": "warn"}},
                {"tag": "streamdom-identify", "payload": {"userId": f"u{seq}", "traits": {"k": seq}}},
                {"tag": "streamdom-network", "payload": {"status": 500}}))
        else:  # mutations, moves, scrolls, inputs, and sources of two digits
            typ, data = 3, {"source": rng.choice((0, 0, 1, 1, 3, 5, 12)), "positions": []}
        rows.append((sid, stream, seq, typ, ts, T0 + len(rows), data_text(data, rng), None))
    return rows


def folded(found: list[Signals | None]) -> Signals:
    total = Signals()
    for sig in found:
        if sig is not None:
            total.add(sig)
    return total


def test_the_tails_figures_whenever_asked_are_those_of_its_rows_read_as_they_came() -> None:
    rng = random.Random(15)
    streams = {(f"s{i}", tab): session_rows(f"s{i}", tab, rng.randint(50, 400), rng)
               for i in range(6) for tab in ("a", "b")}
    # Batches of 1-5 rows per stream, interleaved across streams, each stream's in seq order.
    batches: list[list[Row]] = []
    cursors = {key: 0 for key in streams}
    while cursors:
        key = rng.choice(sorted(cursors))
        start = cursors[key]
        end = min(start + rng.randint(1, 5), len(streams[key]))
        batches.append(streams[key][start:end])
        if end == len(streams[key]):
            del cursors[key]
        else:
            cursors[key] = end
    # What each row says, reading every row once as it arrives.
    reference = SignalTracker()
    said = {(r[ROW_SESSION], r[ROW_STREAM], r[ROW_SEQ]): reference.feed(r[ROW_SESSION], r)
            for batch in batches for r in batch}
    assert sum(s is not None for s in said.values()) > 100

    tail = LogTail()
    held: dict[str, list[Row]] = {}  # what the tail should hold, per session

    def expect(sid: str) -> tuple[Any, ...]:
        rows = held[sid]
        return (rows[0][ROW_SERVER_TIME], rows[-1][ROW_SERVER_TIME], len(rows),
                sum(len(r[ROW_DATA]) for r in rows), dict(Counter(r[ROW_STREAM] for r in rows)),
                folded([said[(r[ROW_SESSION], r[ROW_STREAM], r[ROW_SEQ])] for r in rows]))

    def shown(sid: str) -> tuple[Any, ...]:
        st = tail.get(sid)
        assert st is not None
        return (st.started_at, st.last_event_at, len(st.rows), st.bytes, st.streams, st.signals())

    flushing: dict[str, int] | None = None
    checks = 0
    for i, batch in enumerate(batches):
        tail.hold(batch)
        held.setdefault(batch[0][ROW_SESSION], []).extend(batch)
        assert tail.count == sum(map(len, held.values()))
        roll = rng.random()
        if roll < 0.05:  # a summary of one session
            sid = rng.choice(sorted(held))
            assert shown(sid) == expect(sid)
            checks += 1
        elif roll < 0.07:  # the list: every session
            assert {sid: (st.started_at, st.last_event_at, len(st.rows), st.bytes, st.streams,
                          st.signals()) for sid, st in tail.items()} == {sid: expect(sid) for sid in held}
            checks += 1
        elif roll < 0.1 and flushing is None:  # a flush starts: what it archives and says
            flushing = tail.mark()
            assert flushing == {sid: len(rows) for sid, rows in held.items()}
            per_stream: dict[tuple[str, str], list[Signals | None]] = {}
            for sid, n in flushing.items():
                for r in held[sid][:n]:
                    per_stream.setdefault((sid, r[ROW_STREAM]), []).append(said[(sid, r[ROW_STREAM], r[ROW_SEQ])])
            want = {key: folded(found) for key, found in per_stream.items()
                    if any(s is not None for s in found)}
            assert tail.signals(flushing) == want
            checks += 1
        elif flushing is not None and (roll > 0.8 or i == len(batches) - 1):  # it ends later
            tail.drop(flushing)
            for sid, n in flushing.items():
                del held[sid][:n]
                if not held[sid]:
                    del held[sid]
            flushing = None
    assert checks > 50
    for sid in held:
        assert shown(sid) == expect(sid)
    assert len(batches) > 10 * CATCH_UP


def test_the_compact_source_is_the_patterns() -> None:
    """The one-lookup reading of data.source gives what the pattern reads from the same text."""
    for prefix, source in _COMPACT.items():
        for rest in ('"type":2}', "}", '"x":1.5,"y":2}', ""):
            text = prefix + rest
            m = _SOURCE.match(text)
            assert m is not None and int(m.group(1)) == source, text
