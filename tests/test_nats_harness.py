"""The NATS test harness itself: what the cluster tests rely on when they kill and restart nodes."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import StreamConfig

from streamdom.testing_nats import NatsCluster, wait_jetstream
from tests.helpers import run_async


async def _publish(urls: list[str], replicas: int, n: int) -> str | None:
    nc = await nats.connect(urls)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="H", subjects=["h.>"], num_replicas=replicas))
    for i in range(n):
        await js.publish("h.x", str(i).encode(), headers={"Nats-Msg-Id": str(i)})
    info = await js.stream_info("H")
    await nc.close()
    return info.cluster.leader if info.cluster else None


async def _count(urls: list[str]) -> tuple[int, str | None]:
    """Message count and leader, once the stream answers (its leader election takes seconds)."""
    nc = await nats.connect(urls)
    try:
        for _ in range(60):
            try:
                info = await nc.jetstream(timeout=1).stream_info("H")
            except nats.errors.TimeoutError:
                continue
            if info.cluster is None or info.cluster.leader:
                return info.state.messages, info.cluster.leader if info.cluster else None
            await asyncio.sleep(0.2)
        raise AssertionError("the stream never answered")
    finally:
        await nc.close()


def test_single_node_survives_kill_9_on_the_same_port(nats1: NatsCluster) -> None:
    """A killed node restarts on its port with its stored messages: 'restart everything' needs it."""
    run_async(_publish(nats1.urls, 1, 10))
    node = nats1.nodes[0]
    port = node.port
    node.kill()
    with pytest.raises(RuntimeError, match="connecting to"):  # the wait can fail, and says why
        wait_jetstream(nats1.urls, timeout=0.5)
    node.start()
    wait_jetstream(nats1.urls)
    assert node.port == port
    assert run_async(_count(nats1.urls))[0] == 10
