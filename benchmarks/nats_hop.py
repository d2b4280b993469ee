"""What one hop through NATS costs a cross-node event: JetStream consumer vs core subscription.

One nats-server (JetStream, R1) on loopback; a publisher process and a subscriber process (two
cluster nodes' worth of nats-py). The publisher sends --rate messages/s over --sessions
subjects, each message twice: on a core subject first, then the same bytes to JetStream
(`publish_async`, as the node's publisher). The subscriber has one core subscription and one
ordered push consumer per session (as a node following them) and times each message from its
publish to its callback (CLOCK_MONOTONIC is shared by the processes). Prints p50/p90/p99 of
both per repeat: the difference is what waiting for the store costs a live event.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from support import fmt_pct, machine_note, percentiles

from streamdom.testing_nats import NatsCluster


async def subscriber(urls: list[str], args: argparse.Namespace, out: Any, ready: Any) -> None:
    """Receive both copies of every message; put their latencies (ms) on `out`."""
    nc = await nats.connect(urls, pending_size=64 * 1024 * 1024)
    lat: dict[str, list[float]] = {"jetstream": [], "core": []}

    def timer(kind: str):  # type: ignore[no-untyped-def]
        async def cb(msg: Msg) -> None:
            lat[kind].append(1000 * (time.monotonic() - float(msg.data[:20])))
        return cb

    for i in range(args.sessions):
        await nc.jetstream().subscribe(f"hop.s{i}.*", ordered_consumer=True, cb=timer("jetstream"),
                                       pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.subscribe(f"live.s{i}.*", cb=timer("core"))
    await nc.flush()
    ready.set()
    await asyncio.sleep(args.duration + 3)
    out.put(lat)
    await nc.close()


async def publisher(urls: list[str], args: argparse.Namespace) -> None:
    """--rate messages/s for --duration s, each on core NATS and to JetStream."""
    nc = await nats.connect(urls)
    js = nc.jetstream()
    pad = b"x" * args.size
    acks = []
    start = time.monotonic()
    for i in range(int(args.rate * args.duration)):
        await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
        data = f"{time.monotonic():<20.6f}".encode() + pad
        await nc.publish(f"live.s{i % args.sessions}.t", data)
        acks.append(await js.publish_async(f"hop.s{i % args.sessions}.t", data,
                                           headers={"Nats-Msg-Id": str(i)}))
    await asyncio.gather(*acks)
    await nc.close()


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One repeat on a fresh server."""
    with tempfile.TemporaryDirectory(prefix="streamdom-hop-") as tmp:
        server = NatsCluster(Path(tmp)).start()
        try:
            async def declare() -> None:
                nc = await nats.connect(server.urls)
                await nc.jetstream().add_stream(StreamConfig(name="HOP", subjects=["hop.>"]))
                await nc.close()

            asyncio.run(declare())
            out, ready = mp.Queue(), mp.Event()
            sub = mp.Process(target=lambda: asyncio.run(subscriber(server.urls, args, out, ready)))
            sub.start()
            ready.wait()
            asyncio.run(publisher(server.urls, args))
            lat = out.get()
            sub.join()
            return {k: percentiles(v) for k, v in lat.items()}
        finally:
            server.stop()


def main() -> None:
    """Run --repeat times and print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rate", type=float, default=500.0, help="messages/s (each sent twice)")
    ap.add_argument("--size", type=int, default=300, help="payload bytes")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {machine_note()}")
    for k in range(args.repeat):
        res = run(args)
        for kind, p in res.items():
            print(f"  repeat {k + 1}: {kind:9s} publish -> callback {fmt_pct(p)}")


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())
