"""Reconnect storm: restart the server while --recorders recorders are connected.

A fresh server takes N synthetic recorders (each: hello, Meta + FullSnapshot, then a few events a
second, kept until acknowledged, like the real recorder) and one watched session whose watcher
times every event from the recorder's send. Once everything sent is in Parquet, the server is
restarted (SIGTERM, then start on the same port and data dir). Every recorder sees the close,
reconnects with the real recorder's backoff (random 0-250 ms doubling, at most 10 s), brings its
resume secret, resends what was not acknowledged and goes on. Prints the time from the new
server's "listening" line until every recorder is welcomed, and until every event each one sent
is acknowledged again, the hello -> welcome latency, and the watched session's relay latency
during the storm (from its watcher's reconnect until the last recorder is re-acked) beside
before the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from support import (
    SAMPLE,
    EventShapes,
    ServerProcess,
    fmt_pct,
    load_sample,
    machine_note,
    percentiles,
    write_json,
)
from tornado.websocket import websocket_connect


class Recorder:
    """Hello, events at a pace, unacknowledged frames kept and resent after a reconnect."""

    def __init__(self, bench: Storm, sid: str, rate: float) -> None:
        self.b, self.sid, self.rate = bench, sid, rate
        self.seq = self.acked = 0
        self.frames: list[tuple[int, int, str]] = []  # (first seq, last seq, frame) not yet acked
        self.resume: str | None = None
        self.conn: Any = None
        self.welcomed = asyncio.Event()
        self.tries = 0
        self.welcome_at = 0.0
        self.connecting = False

    async def connect(self) -> None:
        """Until welcomed: connect with backoff, hello, resend."""
        self.connecting = True
        try:
            await self._connect()
        finally:
            self.connecting = False

    async def _connect(self) -> None:
        while True:
            try:
                self.conn = await websocket_connect(self.b.ws + "/ingest", on_message_callback=self.on_message)
                t = time.perf_counter()
                hello = {"type": "hello", "protocol": 2, "sessionId": self.sid, "streamId": "tab",
                         "url": "https://app.example/", "userAgent": "bench"}
                if self.resume:
                    hello["resume"] = self.resume
                await self.conn.write_message(json.dumps(hello))
                await asyncio.wait_for(self.welcomed.wait(), 60)
                if self.conn is not None:
                    self.b.welcome_ms.append((time.perf_counter() - t) * 1000)
                    return
            except Exception:  # noqa: BLE001 - refused or not up yet: back off and retry
                pass
            self.welcomed.clear()
            await asyncio.sleep(random.random() * min(10.0, 0.25 * 2 ** min(self.tries, 6)))
            self.tries += 1

    def on_message(self, msg: str | bytes | None) -> None:
        if msg is None:  # closed: the server went down; reconnect in the background
            self.conn = None
            if self.connecting:
                self.welcomed.set()  # wakes connect(), which backs off and tries again
            elif not self.b.stopping:
                self.welcomed.clear()
                asyncio.ensure_future(self.connect())
            return
        m = json.loads(msg)
        if m["type"] == "ack":
            self.ack(m["seq"])
        elif m["type"] == "welcome":
            self.resume = m["resume"]
            self.tries = 0
            self.welcome_at = time.perf_counter()
            self.ack(m["ackedSeq"])
            for _, _, frame in self.frames:  # resend what the server does not hold yet
                self.conn.write_message(frame)
            self.welcomed.set()

    def ack(self, seq: int) -> None:
        self.acked = max(self.acked, seq)
        while self.frames and self.frames[0][1] <= self.acked:
            self.frames.pop(0)

    def send(self, events: list[tuple[int, str]]) -> None:
        first = self.seq + 1
        self.seq += len(events)
        ts = int(time.time() * 1000)
        body = ",".join(f'{{"type":{t},"data":{d},"timestamp":{ts}}}' for t, d in events)
        frame = f'{{"type":"events","seq":{first},"events":[{body}]}}'
        self.frames.append((first, self.seq, frame))
        if self.conn is not None and self.welcomed.is_set():
            # Timed only when it goes out now: what waited out the restart in the buffer
            # measures the restart, not the relay.
            self.b.sent_at[(self.sid, first)] = time.perf_counter()
            self.conn.write_message(frame)

    async def run(self, shapes: EventShapes) -> None:
        self.send([(4, shapes.meta), (2, shapes.snapshot)])
        inc = shapes.incremental
        i = shapes.index_at(random.random())
        while not self.b.stopping:
            await asyncio.sleep(random.expovariate(self.rate))
            self.send([inc[i][1:]])
            i = (i + 1) % len(inc)


class Storm:
    """The recorders, the watched session's watcher, and what they measured."""

    def __init__(self, ws: str) -> None:
        self.ws = ws
        self.stopping = False
        self.sent_at: dict[tuple[str, int], float] = {}
        self.welcome_ms: list[float] = []
        self.relay: list[tuple[float, float]] = []  # (received at, ms)

    async def watch(self, sid: str, until: float) -> None:
        """Time the watched session's events; reconnect after the restart."""
        while time.perf_counter() < until:
            try:
                conn = await websocket_connect(f"{self.ws}/watch/{sid}")
            except Exception:  # noqa: BLE001 - not up yet
                await asyncio.sleep(0.05)
                continue
            live = False
            while True:
                msg = await conn.read_message()
                if msg is None:
                    break
                now = time.perf_counter()
                if msg.startswith('{"type":"caughtup"'):
                    live = True
                elif live and msg.startswith('{"type":"event'):
                    i = msg.index('"seq":') + 6
                    sent = self.sent_at.get((sid, int(msg[i:msg.index(",", i)])))
                    if sent is not None:
                        self.relay.append((now, (now - sent) * 1000))


async def main_async(args: argparse.Namespace, server: ServerProcess) -> dict[str, Any]:
    shapes = EventShapes.from_sample(load_sample(SAMPLE))
    storm = Storm(server.ws)
    recs = [Recorder(storm, f"storm-{i:05d}", args.rate) for i in range(args.recorders)]
    watched = Recorder(storm, "watched", 10.0)
    for k, r in enumerate([watched, *recs]):
        asyncio.ensure_future(r.connect())
        if k % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.gather(*(r.welcomed.wait() for r in [watched, *recs]))
    tasks = [asyncio.ensure_future(r.run(shapes)) for r in [watched, *recs]]
    until = time.perf_counter() + 3600
    watcher = asyncio.ensure_future(storm.watch("watched", until))
    await asyncio.sleep(args.warmup)
    before = [ms for _, ms in storm.relay]
    # Restart: a clean stop flushes everything to Parquet, so every hello must look its stream up.
    loop = asyncio.get_running_loop()
    t_stop = time.perf_counter()
    await loop.run_in_executor(None, server.stop)
    stopped = time.perf_counter() - t_stop
    await loop.run_in_executor(None, lambda: server.start(port=server.port))
    t0 = time.perf_counter()
    last_before = {r.sid: r.seq for r in recs}
    deadline = t0 + args.timeout
    welcomed_at = reacked_at = None
    while time.perf_counter() < deadline:
        if welcomed_at is None and all(r.welcome_at > t0 for r in recs):
            welcomed_at = time.perf_counter() - t0
        if welcomed_at is not None and all(r.acked >= last_before[r.sid] for r in recs):
            reacked_at = time.perf_counter() - t0
            break
        await asyncio.sleep(0.01)
    storm_end = t0 + (reacked_at if reacked_at is not None else args.timeout)
    await asyncio.sleep(1.0)
    during = [ms for t, ms in storm.relay if t0 <= t <= storm_end]
    storm.stopping = True
    for t in tasks:
        t.cancel()
    watcher.cancel()
    return {"recorders": args.recorders, "stop_s": stopped, "all_welcomed_s": welcomed_at,
            "all_reacked_s": reacked_at, "welcome_ms": percentiles(storm.welcome_ms[args.recorders + 1:]),
            "relay_before_ms": percentiles(before), "relay_during_storm_ms": percentiles(during)}


def main() -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recorders", type=int, default=1000, help="default %(default)s")
    ap.add_argument("--rate", type=float, default=1.0, help="events/s per recorder (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds before the restart (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=60.0, help="give up after (default %(default)s s)")
    ap.add_argument("--root", type=Path, help="the checkout whose server runs (default: this one)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()
    print(f"machine: {machine_note()}")
    with tempfile.TemporaryDirectory(prefix="streamdom-storm-") as tmp:
        extra = {"root": args.root.resolve()} if args.root else {}
        server = ServerProcess(Path(tmp) / "data", "--max-sessions-per-ip", str(4 * args.recorders),
                               "--max-events-per-second-per-ip", "1000000", "--log-level", "WARNING",
                               **extra).start()
        try:
            out = asyncio.run(main_async(args, server))
        finally:
            server.stop()
    print(f"{out['recorders']} recorders; clean stop took {out['stop_s']:.1f} s")
    print(f"after the restart: all welcomed in {out['all_welcomed_s']} s, all re-acked in "
          f"{out['all_reacked_s']} s (target <= 10 s)")
    print(f"hello -> welcome    {fmt_pct(out['welcome_ms'])}")
    print(f"watched session, relay before the restart  {fmt_pct(out['relay_before_ms'])}")
    print(f"watched session, relay during the storm    {fmt_pct(out['relay_during_storm_ms'])} "
          "(target p99 <= 100 ms)")
    write_json(args.json, {"machine": machine_note(), **out})


if __name__ == "__main__":
    main()
