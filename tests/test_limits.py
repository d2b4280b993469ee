"""Every ingest limit closes the offending connection with its documented code and harms no one else."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClosedError, websocket_connect

from streamdom.testing import InProcessServer
from streamdom.wire import CloseCode
from tests.helpers import Recorder, run_async, server_config, session_events


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    srv = InProcessServer(server_config(tmp_path_factory.mktemp("lim") / "data",
                                      max_message_bytes=65536, max_events_per_second=200,
                                      max_sessions_per_ip=5,
                                      # A refused recorder's session stays known (live, no
                                      # events) for the whole test, however slow the machine:
                                      # "nothing stored" is then `[]`, not a 404 after it ended.
                                      grace_seconds=60)).start()
    yield srv
    srv.stop()


def with_bystander(srv: InProcessServer, sid: str, attack: Callable[[], Awaitable[None]]) -> None:
    """Run `attack` while a well-behaved recorder streams; it must get every event stored."""
    evs = session_events(60)

    async def go() -> None:
        good = Recorder(srv.ws, sid)
        await good.connect()
        await good.send_events(1, evs[:30])
        await attack()
        await good.send_events(31, evs[30:])
        await good.wait_ack(60)
        good.close()

    run_async(go())
    assert srv.get_json(f"/api/sessions/{sid}/events") == evs


async def closed_with(rec: Recorder) -> tuple[int | None, str | None]:
    while (await rec.recv())["type"] != "__closed__":
        pass
    return rec.close_code()


@pytest.mark.parametrize("frame, reason", [
    ("not json", "not valid JSON"),
    ('{"type":"events","seq":1,"events":[{"type":3,"data":{},"timestamp":1}]}', "first frame must be hello"),
    ("[1,2]", "JSON object"),
    ('{"type":"hello","sessionId":"bad id!","streamId":"a"}', "sessionId"),
    ('{"type":"hello","sessionId":"' + "x" * 129 + '","streamId":"a"}', "sessionId"),
    ("[" * 5000 + "]" * 5000, "JSON object"),
    # Depth is bounded by the thread's stack (16,384 levels on 8 MB), not by the C decoder's
    # recursion limit (1,000): only a nesting no stack could take is refused.
    ('{"type":"hello","sessionId":"a","streamId":"b","x":' + "[" * 20000 + "]" * 20000 + "}",
     "nested deeper"),
])
def test_malformed_first_frames_close_4400(limited: InProcessServer, frame: str, reason: str) -> None:
    async def attack() -> None:
        conn = await websocket_connect(limited.ws + "/ingest")
        await conn.write_message(frame)
        assert await conn.read_message() is None
        assert conn.close_code == CloseCode.MALFORMED and reason in (conn.close_reason or "")

    with_bystander(limited, f"ok-{abs(hash(frame)) % 10**6}", attack)


@pytest.mark.parametrize("event, reason", [
    ({"type": 3, "timestamp": 1}, "event.data"),
    ({"type": "3", "data": {}, "timestamp": 1}, "event.type"),
    ({"type": 3, "data": {}, "timestamp": "now"}, "event.timestamp"),
    ({"type": 3, "data": {}, "timestamp": -5}, "event.timestamp"),
])
def test_bad_event_shapes_close_4400_and_are_not_stored(limited: InProcessServer, event: dict,
                                                         reason: str) -> None:
    sid = f"shape-{abs(hash(reason + json.dumps(event))) % 10**6}"

    async def attack() -> None:
        bad = Recorder(limited.ws, sid + "-bad")
        await bad.connect()
        await bad.send_events(1, session_events(2) + [event])
        code, why = await closed_with(bad)
        assert code == CloseCode.MALFORMED and reason in (why or "")

    with_bystander(limited, sid, attack)
    # The whole frame was refused: not one of its events reached the archive.
    assert limited.get_json(f"/api/sessions/{sid}-bad/events") == []


def test_oversized_message_closes_1009(limited: InProcessServer) -> None:
    async def attack() -> None:
        big = Recorder(limited.ws, "big")
        await big.connect()
        await big.send_events(1, [{"type": 3, "data": {"x": "y" * 70000}, "timestamp": 1}])
        code, _ = await closed_with(big)
        assert code == CloseCode.TOO_BIG

    with_bystander(limited, "ok-big", attack)


def test_event_rate_limit_closes_4429(limited: InProcessServer) -> None:
    async def attack() -> None:
        flood = Recorder(limited.ws, "flood")
        await flood.connect()
        evs = session_events(100)
        seq = 1
        for _ in range(10):  # 1000 events at once: over 2 s worth of a 200/s budget
            try:
                await flood.send_events(seq, evs)
            except WebSocketClosedError:
                break  # the server hung up already (a busy machine reads slower): see why below
            seq += 100
        code, why = await closed_with(flood)
        assert code == CloseCode.RATE_LIMIT and "rate" in (why or "")

    with_bystander(limited, "ok-rate", attack)


def test_sessions_per_ip_closes_4408(limited: InProcessServer) -> None:
    async def attack() -> None:
        recs = []
        for i in range(4):  # the bystander holds one of the five
            r = Recorder(limited.ws, f"many-{i}")
            await r.connect()
            recs.append(r)
        extra = Recorder(limited.ws, "many-extra")
        extra.conn = await websocket_connect(extra.url)
        await extra.send({"type": "hello", "sessionId": "many-extra", "streamId": "a"})
        code, _ = await closed_with(extra)
        assert code == CloseCode.TOO_MANY_SESSIONS
        for r in recs:
            r.close()

    with_bystander(limited, "ok-many", attack)


def test_write_key_and_origin_are_checked_at_the_handshake(tmp_path: Path) -> None:
    srv = InProcessServer(server_config(tmp_path / "data", write_keys=("k1",),
                                      allowed_origins=("https://shop.example",))).start()
    try:
        async def go() -> None:
            for url, origin, status in [
                ("/ingest", "https://shop.example", 401),
                ("/ingest?key=wrong", "https://shop.example", 401),
                ("/ingest?key=k1", "https://evil.example", 403),
            ]:
                req = HTTPRequest(srv.ws + url, headers={"Origin": origin})
                with pytest.raises(HTTPClientError) as exc:
                    await websocket_connect(req)
                assert exc.value.code == status
            ok = Recorder(srv.ws, "keyed")
            ok.url += "?key=k1"
            welcome = await ok.connect()
            assert welcome["type"] == "welcome"
            ok.close()

        run_async(go())
    finally:
        srv.stop()
