"""A stalled viewer costs bounded memory, is resynced from a snapshot, and delays nobody."""

from __future__ import annotations

import asyncio
import json
import time

from tornado.websocket import websocket_connect

from streamdom.testing import InProcessServer
from tests.helpers import Recorder, event, read_until, run_async, server_config, watched


def test_stalled_viewer_is_resynced_and_fast_viewer_gets_everything(tmp_path) -> None:
    srv = InProcessServer(server_config(tmp_path / "data", viewer_queue_max_bytes=1_000_000,
                                      ring_max_bytes=3_000_000)).start()
    blob = "x" * 40_000
    evs = []
    for i in range(600):  # 24 MB in all, a fresh full snapshot every 50 events
        t = 4 if i % 50 == 0 else 2 if i % 50 == 1 else 3
        evs.append(event(t, 1_700_000_000_000 + i, href="http://a/", blob=blob, i=i))
    try:
        async def go() -> None:
            rec = Recorder(srv.ws, "slow")
            await rec.connect()
            await rec.send_events(1, evs[:2])
            await rec.wait_ack(2)
            stalled = await websocket_connect(f"{srv.ws}/watch/slow", max_message_size=1 << 30)
            await read_until(stalled, lambda m: m["type"] == "hello")
            fast = await websocket_connect(f"{srv.ws}/watch/slow", max_message_size=1 << 30)
            await read_until(fast, lambda m: m["type"] == "caughtup")
            got: list[int] = []
            arrival: list[float] = []

            async def drain_fast() -> None:
                while len(got) < len(evs) - 2:
                    msg = json.loads(await fast.read_message())
                    for ev in watched([msg]):
                        got.append(ev["data"]["i"])
                        arrival.append(time.monotonic())

            reader = asyncio.ensure_future(drain_fast())
            for i in range(2, len(evs), 10):
                await rec.send_events(i + 1, evs[i:i + 10])
                await rec.wait_ack(min(i + 10, len(evs)))
            await asyncio.wait_for(reader, 60)
            assert got == list(range(2, len(evs))), "the fast viewer got every event, in order"
            # Now the stalled viewer reads: a bounded prefix, then resync and a playable backlog.
            frames = await read_until(stalled, lambda m: m["type"] == "resync", timeout=30)
            before = len(frames) - 1
            frames += await read_until(stalled, lambda m: m["type"] == "caughtup", timeout=30)
            sent_before = len(watched(frames[:before]))
            assert sent_before < 300, f"{sent_before} events were queued for a stalled viewer"
            after = watched(frames[before:])
            assert after[0]["type"] == 4 and after[1]["type"] == 2
            assert after[-1]["data"]["i"] == len(evs) - 1
            rec.close()

        run_async(go())
    finally:
        srv.stop()
