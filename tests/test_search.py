"""The session summaries' derived fields and the search of GET /api/sessions, over real sockets:
what recorders send (identify, metadata, errors, console, network, clicks) shows in the
summaries, live (not archived yet) and archived alike, in the archive's index, and filters the
list; bad parameters get a 400 with a JSON error; paging returns every match once."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from tornado.websocket import websocket_connect

from streamdom.archive import lake
from streamdom.testing import InProcessServer
from tests.helpers import (
    Recorder,
    event,
    read_until,
    run_async,
    server_config,
    session_events,
    wait_for,
)

T0 = int(time.time() * 1000) - 60_000


def custom(ts: int, tag: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An rrweb custom event as the recorder emits it."""
    return event(5, ts, tag=tag, payload=payload)


def click(ts: int, x: float, y: float, text: str | None = None) -> dict[str, Any]:
    """A MouseInteraction Click (what rrweb records, plus the recorder's clicked text)."""
    data: dict[str, Any] = {"source": 2, "type": 2, "id": 5, "x": x, "y": y}
    if text is not None:
        data["text"] = text
    return event(3, ts, **data)


def mutation(ts: int) -> dict[str, Any]:
    """A DOM mutation."""
    return event(3, ts, source=0, texts=[], attributes=[], removes=[], adds=[])


def mousemove(ts: int) -> dict[str, Any]:
    """A mouse move: no change of the page."""
    return event(3, ts, source=1, positions=[{"x": 1, "y": 1, "id": 5, "timeOffset": 0}])


def send(app: InProcessServer, session_id: str, events: list[dict], stream: str = "s1",
         goodbye: bool = True, ua: str = "pytest") -> None:
    """Record `events` as one stream, wait for their ack, then leave (saying goodbye)."""
    async def go() -> None:
        rec = Recorder(app.ws, session_id, stream)
        await rec.connect()
        await rec.send_events(1, events)
        await rec.wait_ack(len(events))
        if goodbye:
            await rec.send({"type": "goodbye"})
        rec.close()

    run_async(go())


def get(app: InProcessServer, path: str) -> tuple[int, Any]:
    """Status and JSON body of a GET."""
    try:
        with urllib.request.urlopen(app.http + path, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def listed(app: InProcessServer, query: str = "") -> list[str]:
    """Ids of the sessions /api/sessions answers for `query`."""
    status, body = get(app, "/api/sessions?limit=1000&" + query)
    assert status == 200, body
    return [s["id"] for s in body["sessions"]]


def archived(app: InProcessServer) -> bool:
    """Whether the log's tail is empty (everything is in the archive)."""
    assert app.services is not None
    return app.services.bus.tail.count == 0  # type: ignore[attr-defined]


def flush(app: InProcessServer) -> None:
    """Move everything in the log's tail into the archive now."""
    assert app.services is not None and app._loop is not None
    asyncio.run_coroutine_threadsafe(app.services.bus.flusher.flush(),  # type: ignore[attr-defined]
                                     app._loop).result(60)
    assert archived(app)


def both_ways(app: InProcessServer, check: Any) -> None:
    """Run `check` while the events are not archived yet (live figures), then once they are."""
    check()
    flush(app)
    check()


@pytest.fixture
def held(tmp_path: Any) -> Any:
    """A server that flushes only when told (`flush`): figures come from the log's tail first."""
    srv = InProcessServer(server_config(tmp_path / "data", flush_interval=3600)).start()
    yield srv
    srv.stop()


def test_identify_metadata_errors_and_clicks_in_summaries_live_then_archived(
        held: InProcessServer, tmp_path: Any) -> None:
    app = held
    t = T0
    evs = session_events(2, t, href="http://app.test/home") + [
        custom(t + 10, "streamdom-identify", {"userId": "pm1@example.com",
                                              "traits": {"plan": "pro", "team": "a/b"}}),
        custom(t + 11, "streamdom-metadata", {"fields": {"build": "1.2.3"}}),
        custom(t + 12, "streamdom-error", {"source": "error", "message": "boom", "stack": "x"}),
        custom(t + 13, "streamdom-error", {"source": "rejection", "message": "no", "stack": ""}),
        custom(t + 14, "streamdom-console", {"level": "error", "message": "bad", "stack": ""}),
        custom(t + 15, "streamdom-console", {"level": "warn", "message": "hm", "stack": ""}),
        custom(t + 16, "streamdom-network", {"method": "GET", "url": "http://api.test/a",
                                             "status": 500, "duration": 3, "initiator": "fetch"}),
        custom(t + 17, "streamdom-network", {"method": "GET", "url": "http://api.test/b",
                                             "status": 0, "duration": 3, "initiator": "xhr"}),
        custom(t + 18, "streamdom-network", {"method": "GET", "url": "http://api.test/c",
                                             "status": 200, "duration": 3, "initiator": "xhr"}),
        custom(t + 19, "other-tool", {"level": "error"}),
        click(t + 100, 10, 10, "Save   draft"),
        event(4, t + 200, href="http://app.test/settings?tab=2", width=800, height=600),
    ]
    send(app, "who-1", evs)
    send(app, "who-1", session_events(2, t + 300, href="http://app.test/other-tab"), stream="s2")
    send(app, "nobody", session_events(3, t))

    def check() -> None:
        status, s = get(app, "/api/sessions/who-1")
        assert status == 200, s
        assert s["user_id"] == "pm1@example.com"
        assert s["traits"] == {"plan": "pro", "team": "a/b"}
        assert s["metadata"] == {"build": "1.2.3"}
        assert (s["errors"], s["warnings"], s["network_errors"]) == (3, 1, 2)
        assert s["tabs"] == 2 and s["live"] is False
        assert s["duration_ms"] == s["last_event_at"] - s["started_at"]
        assert s["browser"] == "" and s["os"] == ""  # "pytest" is no browser
        assert listed(app, "user=pm1@example.com") == ["who-1"]
        assert listed(app, "user=pm1") == []  # exact
        assert listed(app, "trait=plan:pro") == ["who-1"]
        assert listed(app, "trait=team:a/b&trait=plan:pro") == ["who-1"]
        assert listed(app, "trait=plan:free") == []
        assert listed(app, "q=PM1@EXAMPLE") == ["who-1"]  # user id, any case
        assert listed(app, "q=1.2.3") == ["who-1"]  # metadata value
        assert listed(app, "q=settings") == ["who-1"]  # a page visited after the first
        assert listed(app, "url=other-tab") == ["who-1"]  # another tab's page
        assert listed(app, "clicked=save%20draft") == ["who-1"]  # whitespace collapsed
        assert listed(app, "q=save+draft") == ["who-1"]
        assert listed(app, "has_errors=1") == ["who-1"]
        assert sorted(listed(app, "has_errors=0")) == ["nobody", "who-1"]  # 0: no filter
        assert listed(app, "q=boom") == []  # messages are not searched

    both_ways(app, check)
    # The archive's index says the same to analysts.
    con = lake.connect(lake.Location.local(tmp_path / "data"), read_only=True)
    row = con.execute(
        "SELECT max(user_id), sum(errors), sum(warnings), sum(network_errors), "
        "count(DISTINCT stream_id), flatten(list(urls)), max(traits) FROM lake.sessions "
        "WHERE session_id = 'who-1'").fetchone()
    assert row[:5] == ("pm1@example.com", 3, 1, 2, 2)
    assert "http://app.test/settings?tab=2" in row[5] and "http://app.test/other-tab" in row[5]
    assert json.loads(row[6]) == {"plan": "pro", "team": "a/b"}
    con.close()


def test_rage_and_dead_clicks(held: InProcessServer) -> None:
    app = held
    t = T0
    start = session_events(2, t)
    # Three clicks within 1 s and 30 px, each answered by the page: one rage burst, no dead click.
    rage = start + [click(t + 100, 100, 100), mutation(t + 150), click(t + 400, 110, 105),
                    mutation(t + 450), click(t + 700, 95, 110), mutation(t + 720),
                    click(t + 800, 100, 100), mutation(t + 820), mousemove(t + 3000)]
    # A click the page answers (a mutation 900 ms later) and one it ignores (nothing for 2 s).
    dead = start + [click(t + 100, 10, 10), mutation(t + 1000), click(t + 2000, 300, 300),
                    mousemove(t + 2500), mousemove(t + 4100)]
    # Three clicks within 1 s but far apart: no rage; then a click left undecided (its stream ends).
    apart = start + [click(t + 100, 0, 0), mutation(t + 110), click(t + 200, 200, 0),
                     mutation(t + 210), click(t + 300, 400, 0), mutation(t + 310), click(t + 5000, 1, 1)]
    send(app, "rage", rage)
    send(app, "dead", dead)
    send(app, "apart", apart)

    def check() -> None:
        figures = {sid: (s["rage_clicks"], s["dead_clicks"]) for sid in ("rage", "dead", "apart")
                   for s in [get(app, f"/api/sessions/{sid}")[1]]}
        assert figures == {"rage": (1, 0), "dead": (0, 1), "apart": (0, 0)}
        assert listed(app, "has_rage=1") == ["rage"]
        assert listed(app, "has_dead=1") == ["dead"]

    both_ways(app, check)


def test_rage_and_dead_clicks_across_flushes(held: InProcessServer) -> None:
    app = held
    # A click decided by an event that arrives in a later batch (after a flush) counts once.
    t = T0

    async def go() -> None:
        rec = Recorder(app.ws, "split")
        await rec.connect()
        await rec.send_events(1, session_events(2, t) + [click(t + 100, 5, 5)])
        await rec.wait_ack(3)
        flush(app)
        await rec.send_events(4, [mousemove(t + 1500)])
        await rec.wait_ack(4)
        rec.close()

    run_async(go())
    assert get(app, "/api/sessions/split")[1]["dead_clicks"] == 1
    flush(app)
    assert get(app, "/api/sessions/split")[1]["dead_clicks"] == 1


def test_q_is_a_literal_substring(app: InProcessServer) -> None:
    for sid, href in (("pct", "http://app.test/100%25/a_b"), ("plain", "http://app.test/100x/aXb"),
                      ("other", "http://app.test/zzz")):
        send(app, sid, session_events(2, T0, href=href))
    assert listed(app, "q=%25") == ["pct"]  # "%" matches only a "%"
    assert listed(app, "q=a_b") == ["pct"]  # "_" only a "_"
    assert listed(app, "q=%2525%2Fa_b") == ["pct"]
    assert sorted(listed(app, "q=100")) == ["pct", "plain"]
    assert listed(app, "url=%25") == ["pct"]
    assert listed(app, "q=%5C") == []  # a backslash is no escape either


BAD_QUERIES = [
    "limit=-1", "limit=0", "limit=1001", "limit=abc", "limit=1.5", "limit=%EF%BC%91",  # fullwidth 1
    "offset=-1", "offset=x", "since=-5", "before=soon", "min_duration=-1", "max_duration=1e3",
    "has_errors=yes", "has_rage=2", "live=true", "trait=nocolon", "trait=:v",
    "q=" + "x" * 1025, "trait=" + "&trait=".join(f"k{i}:v" for i in range(11)),
]


def test_bad_search_parameters_get_400_with_a_json_error(app: InProcessServer) -> None:
    for query in BAD_QUERIES:
        status, body = get(app, "/api/sessions?" + query)
        assert status == 400, query
        assert isinstance(body["error"], str) and body["error"], query
    assert get(app, "/api/sessions?limit=1000&offset=0&has_errors=0&live=1&q=" + "x" * 1024)[0] == 200


def test_paging_returns_every_match_once_with_the_true_total(app: InProcessServer) -> None:
    async def go() -> None:
        for i in range(23):
            rec = Recorder(app.ws, f"page-{i:02d}")
            await rec.connect()
            await rec.send_events(1, session_events(2, T0 + i, href=f"http://app.test/p{i % 2}"))
            await rec.wait_ack(2)
            await rec.send({"type": "goodbye"})
            rec.close()

    run_async(go())
    wait_for(lambda: all(not s["live"] for s in get(app, "/api/sessions?limit=1000")[1]["sessions"]),
             what="sessions ended")
    seen: list[str] = []
    offset = 0
    while True:
        status, body = get(app, f"/api/sessions?limit=4&offset={offset}&url=p1")
        assert status == 200 and body["total"] == 11 and body["limit"] == 4
        if not body["sessions"]:
            break
        seen += [s["id"] for s in body["sessions"]]
        offset += 4
    assert sorted(seen) == [f"page-{i:02d}" for i in range(1, 23, 2)] and len(seen) == 11
    assert get(app, "/api/sessions?limit=1000")[1]["total"] == 23
    status, body = get(app, "/api/sessions?offset=500")
    assert status == 200 and body["sessions"] == [] and body["total"] == 23


def test_hostile_identify_is_bounded(app: InProcessServer) -> None:
    traits = {f"k{i}" + "x" * 100: "v" * 400 for i in range(100)}
    send(app, "huge", session_events(2, T0) + [
        custom(T0 + 5, "streamdom-identify", {"userId": "u" * 5_000, "traits": traits}),
        custom(T0 + 6, "streamdom-identify", {"userId": {"not": "a string"}}),
        custom(T0 + 7, "streamdom-metadata", {"fields": ["not", "an", "object"]}),
        # Over 64 KB: not the recorder's, not read at all.
        custom(T0 + 8, "streamdom-identify", {"userId": "big", "traits": {"x": "y" * 70_000}}),
    ])
    s = get(app, "/api/sessions/huge")[1]
    assert s["user_id"] == "u" * 128
    assert len(s["traits"]) == 32
    assert all(len(k) <= 64 and len(v) <= 256 for k, v in s["traits"].items())
    assert s["metadata"] == {}


def test_goodbye_ends_the_session_at_once(tmp_path: Any) -> None:
    app = InProcessServer(server_config(tmp_path / "data", grace_seconds=3600)).start()
    try:
        async def go() -> None:
            drop, bye = Recorder(app.ws, "dropped"), Recorder(app.ws, "closed")
            for rec in (drop, bye):
                await rec.connect()
                await rec.send_events(1, session_events(2, T0))
                await rec.wait_ack(2)
            await bye.send({"type": "goodbye"})
            assert (await bye.recv())["type"] == "__closed__"
            drop.close()

        run_async(go())
        live = {s["id"]: s["live"] for s in get(app, "/api/sessions")[1]["sessions"]}
        assert live == {"dropped": True, "closed": False}  # a plain drop keeps its grace period
        assert listed(app, "live=1") == ["dropped"] and listed(app, "live=0") == ["closed"]
    finally:
        app.stop()


def test_updates_push_the_same_items_as_the_api(held: InProcessServer) -> None:
    app = held

    async def go() -> None:
        updates = await websocket_connect(app.ws + "/updates")
        first = json.loads(await updates.read_message())
        assert first["type"] == "sessions" and first["sessions"] == [] and first["total"] == 0
        rec = Recorder(app.ws, "pushed")
        await rec.connect()
        await rec.send_events(1, session_events(2, T0) + [
            custom(T0 + 5, "streamdom-identify", {"userId": "u-9", "traits": {"plan": "pro"}}),
            custom(T0 + 6, "streamdom-error", {"source": "error", "message": "m", "stack": ""})])
        await rec.wait_ack(4)
        await rec.send({"type": "goodbye"})
        msgs = await read_until(updates, lambda m: m["type"] == "session" and not m["session"]["live"]
                                and m["session"]["errors"] == 1)
        pushed = msgs[-1]["session"]
        rec.close()
        updates.close()
        assert pushed == get(app, "/api/sessions/pushed")[1]
        assert pushed["user_id"] == "u-9" and pushed["traits"] == {"plan": "pro"} and pushed["tabs"] == 1

    run_async(go())


def test_a_click_that_navigates_is_not_dead(held: InProcessServer) -> None:
    # The next page of the tab loads 3 s after the click (a slow server): the click did something.
    t = T0
    send(held, "nav-click", session_events(2, t) + [click(t + 100, 5, 5, "Next")]
         + session_events(2, t + 3100, href="http://app.test/next") + [mousemove(t + 5000)])
    assert get(held, "/api/sessions/nav-click")[1]["dead_clicks"] == 0
