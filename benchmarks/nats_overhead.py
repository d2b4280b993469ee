"""nats-py's CPU per message on this machine: what a cluster node pays per JetStream message.

One nats-server (JetStream, R1) on loopback; one client process. Prints CPU microseconds per
message of this process for:
- publish: `publish_async` of --sessions x --per messages (--size bytes, our headers), every
  ack awaited (what the node's publisher does per batch);
- publish + receive through one ordered consumer per session (what a node following
  --sessions sessions does today);
- publish + receive through one core-NATS wildcard subscription (the alternative: one
  subscription per node, no per-session consumer).
Receive cost = second (or third) figure minus the first. Each variant runs --repeat times on a
fresh server; the medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from support import self_cpu_seconds

from streamdom.testing_nats import NatsCluster


async def run(mode: str, args: argparse.Namespace) -> float:
    """CPU microseconds per message of this process for one variant."""
    with tempfile.TemporaryDirectory(prefix="streamdom-natsov-") as tmp:
        server = NatsCluster(Path(tmp)).start()
        try:
            pub = await nats.connect(server.urls)
            js = pub.jetstream()
            await js.add_stream(StreamConfig(name="OV", subjects=["ov.>"]))
            sub_nc = await nats.connect(server.urls, pending_size=64 * 1024 * 1024)
            total = args.sessions * args.per
            got = 0
            done = asyncio.Event()

            async def on_msg(msg: Msg) -> None:
                nonlocal got
                _ = msg.headers
                got += 1
                if got == total:
                    done.set()

            if mode == "ordered":
                for i in range(args.sessions):
                    await sub_nc.jetstream().subscribe(
                        f"ov.s{i}.*", ordered_consumer=True, cb=on_msg, pending_msgs_limit=-1,
                        pending_bytes_limit=-1)
            elif mode == "core":
                await sub_nc.subscribe("ov.>", cb=on_msg, pending_msgs_limit=-1,
                                       pending_bytes_limit=-1)
            else:
                done.set()
            await asyncio.sleep(0.3)
            payload = b"x" * args.size
            cpu0 = self_cpu_seconds()
            futures = []
            for k in range(args.per):
                for i in range(args.sessions):
                    futures.append(await js.publish_async(
                        f"ov.s{i}.t", payload,
                        headers={"Nats-Msg-Id": f"s{i}.t.{k}", "Sd-Node": "n1", "Sd-Seq": f"{k}-{k}"}))
                if len(futures) >= 1000:
                    await asyncio.gather(*futures)
                    futures = []
            await asyncio.gather(*futures)
            await asyncio.wait_for(done.wait(), 120)
            cpu = self_cpu_seconds() - cpu0
            await sub_nc.close()
            await pub.close()
            return 1e6 * cpu / total
        finally:
            server.stop()


def main() -> None:
    """Run each variant --repeat times and print the medians."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--per", type=int, default=60, help="messages per session")
    ap.add_argument("--size", type=int, default=700, help="payload bytes")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    res: dict[str, list[float]] = {"publish": [], "ordered": [], "core": []}
    for _ in range(args.repeat):
        for mode in res:
            res[mode].append(asyncio.run(run(mode, args)))
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"{args.sessions} sessions x {args.per} messages of {args.size} B, median of {args.repeat}:")
    print(f"  publish_async + ack:                         {med['publish']:.1f} us CPU per message")
    print(f"  receive, one ordered consumer per session:   {med['ordered'] - med['publish']:.1f} us")
    print(f"  receive, one core wildcard subscription:     {med['core'] - med['publish']:.1f} us")


if __name__ == "__main__":
    sys.exit(main())
