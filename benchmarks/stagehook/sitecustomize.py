"""Stage stamps for `benchmarks/cluster.py --stages`: loaded into a StreamDOM node through
PYTHONPATH when $SD_STAGES names a directory; without it, this file does nothing.

It wraps a few methods of the node (not the product code: the product stays as it is) and, at
exit, writes `<pid>.json` with monotonic stamps (CLOCK_MONOTONIC, the same clock in every
process of the machine, so stamps of two nodes compare):
- `pub`: per ingest batch handed to the bus (key, first seq, last seq, t);
- `msg`: per JetStream message (key, first, last, t_task: its publish task ran (= its first
  attempt, where messages go without a task), t_handed: in nats-py's buffer, t_acked:
  JetStream's ack reached the publisher, t_sent: the publisher decided to send it);
- `ack`: per ack frame written to a recorder (key, seq, t);
- `recv`: per message a follower received (key, first, last, t, t_relayed);
- `live`: per stream per live message (core NATS) a node received (key, first, last, t,
  t_relayed, taken: whether its rows continued the stream; else the stream brings them);
- `lag`: how late a 10 ms IOLoop timer fired (ms), the length of a turn on this node.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time

OUT = os.environ.get("SD_STAGES")


def _install(out_dir: str) -> None:
    sys.path.insert(0, os.getcwd())  # the checkout the node runs (--baseline runs another)
    import asyncio

    from streamdom.bus import follower, natsbus, publisher
    from streamdom.bus import jetstream as J
    from streamdom.records import ROW_SEQ
    from streamdom.web.handlers import ingest

    now = time.monotonic
    data: dict[str, list] = {"pub": [], "msg": [], "ack": [], "recv": [], "live": [], "lag": []}

    orig_publish = natsbus.NatsBus.publish

    def publish(self, producer, batch):  # type: ignore[no-untyped-def]
        r = batch.rows
        data["pub"].append((producer.session_id, producer.stream_id, r[0][ROW_SEQ], r[-1][ROW_SEQ], now()))
        return orig_publish(self, producer, batch)

    natsbus.NatsBus.publish = publish  # type: ignore[method-assign]

    P = publisher.StreamPublisher
    orig_send = P._send
    handed: dict[tuple[str, str], float] = {}  # stream -> when the publisher sent its message

    def _send(self, key, st):  # type: ignore[no-untyped-def]
        handed[key] = now()
        return orig_send(self, key, st)

    P._send = _send  # type: ignore[method-assign]

    if hasattr(P, "_attempt"):  # messages sent from callbacks (no task per message)
        live: dict[int, list] = {}  # id(message) -> its stamps

        orig_attempt = P._attempt

        def _attempt(self, m):  # type: ignore[no-untyped-def]
            t = now()
            orig_attempt(self, m)
            if id(m) not in live:  # its first attempt: sent from the caller's turn
                live[id(m)] = [m.key[0], m.key[1], m.rows[0][ROW_SEQ], m.rows[-1][ROW_SEQ],
                               t, now(), 0.0, handed.pop(m.key, t)]

        orig_done = P._done

        def _done(self, m, snap_seq):  # type: ignore[no-untyped-def]
            rec = live.pop(id(m), None)
            if rec is not None:
                rec[6] = now()
                data["msg"].append(rec)
            return orig_done(self, m, snap_seq)

        P._attempt = _attempt  # type: ignore[method-assign]
        P._done = _done  # type: ignore[method-assign]
    else:  # a task per message (the code before 2026-11-26 05:30 UTC)
        orig_task = P._publish
        orig_within = publisher.within
        current: dict[int, list] = {}  # task id -> its message's stamps

        async def _publish(self, key, rows, snap):  # type: ignore[no-untyped-def]
            rec = [key[0], key[1], rows[0][ROW_SEQ], rows[-1][ROW_SEQ], now(), 0.0, 0.0,
                   handed.pop(key, 0.0)]
            current[id(asyncio.current_task())] = rec
            try:
                await orig_task(self, key, rows, snap)
            finally:
                current.pop(id(asyncio.current_task()), None)
            data["msg"].append(rec)

        async def within(future, timeout):  # type: ignore[no-untyped-def]
            rec = current.get(id(asyncio.current_task()))
            if rec is not None:
                rec[5] = now()
            result = await orig_within(future, timeout)
            if rec is not None:
                rec[6] = now()
            return result

        P._publish = _publish  # type: ignore[method-assign]
        publisher.within = within

    orig_send_ack = ingest.IngestHandler.send_ack

    def send_ack(self):  # type: ignore[no-untyped-def]
        if self.producer is not None:
            data["ack"].append((self.producer.session_id, self.producer.stream_id,
                                self._acked_seq, now()))
        return orig_send_ack(self)

    ingest.IngestHandler.send_ack = send_ack  # type: ignore[method-assign]

    orig_on_msg = follower.SessionFollower._on_msg

    async def _on_msg(self, msg):  # type: ignore[no-untyped-def]
        t = now()
        await orig_on_msg(self, msg)
        h = msg.headers or {}
        if h.get(J.HDR_NODE) != self.node_id and J.HDR_SEQ in h:
            sid, stream = J.parse_subject(msg.subject)
            first, last = h[J.HDR_SEQ].split("-")
            data["recv"].append((sid, stream, int(first), int(last), t, now()))

    follower.SessionFollower._on_msg = _on_msg  # type: ignore[method-assign]

    try:  # the live path (2026-11-26 08:00 UTC)
        from streamdom.bus import livepath
    except ImportError:
        livepath = None  # type: ignore[assignment]
    if livepath is not None:
        orig_on_live = livepath.LivePath._on_live
        orig_live_rows = natsbus.NatsBus._live_rows
        got_at = [0.0]

        async def _on_live(self, msg):  # type: ignore[no-untyped-def]
            got_at[0] = now()
            await orig_on_live(self, msg)

        def _live_rows(self, session_id, rows):  # type: ignore[no-untyped-def]
            orig_live_rows(self, session_id, rows)
            t = now()
            spans: dict[str, list[int]] = {}
            for r in rows:
                span = spans.setdefault(r[1], [r[ROW_SEQ], r[ROW_SEQ]])
                span[1] = r[ROW_SEQ]
            for stream, (first, last) in spans.items():
                data["live"].append((session_id, stream, first, last, got_at[0], t,
                                     self.relayed.high(session_id, stream) >= last))

        livepath.LivePath._on_live = _on_live  # type: ignore[method-assign]
        natsbus.NatsBus._live_rows = _live_rows  # type: ignore[method-assign]

    def lag_probe() -> None:
        loop = asyncio.get_running_loop()
        due = [loop.time() + 0.01]

        def tick() -> None:
            data["lag"].append((loop.time() - due[0]) * 1000)
            due[0] = loop.time() + 0.01
            loop.call_at(due[0], tick)

        loop.call_at(due[0], tick)

    orig_start = natsbus.NatsBus.start

    async def start(self):  # type: ignore[no-untyped-def]
        await orig_start(self)
        lag_probe()

    natsbus.NatsBus.start = start  # type: ignore[method-assign]

    def dump() -> None:
        with open(os.path.join(out_dir, f"{os.getpid()}.json"), "w") as f:
            json.dump(data, f)

    atexit.register(dump)


if OUT:
    _install(OUT)
