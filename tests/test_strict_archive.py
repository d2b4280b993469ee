"""The archive is strict JSON, always: whatever a recorder sends, every reader downstream works.

Hypothesis-generated events, with any text (lone UTF-16 surrogates, control characters, emoji)
and any finite number, go to a real server's /ingest through a real socket while a watcher
reads the relay; some frames also carry NaN or Infinity and must be refused (4400) with nothing
of them stored, the recorder carrying on. Then the server is killed (-9) with everything still
in its write-ahead log, restarted (recovery), and flushes to Parquet. After that, every README
analyst query, `json_extract` over every row, the events API read by a strict JSON parser, and a
replay in Chromium all succeed, and every accepted event is there (lone surrogates as U+FFFD).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser
from tornado.websocket import websocket_connect

from streamdom.testing import ServerProcess
from tests.helpers import (
    TEST_SERVER_ARGS,
    Recorder,
    read_until,
    run_async,
    session_events,
    strict_loads,
    wait_for,
    well_formed,
)
from tests.test_analyst_queries import readme_queries

anything = st.characters(codec=None, exclude_categories=[])  # lone surrogates included
text = st.text(anything, max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(
    allow_nan=False, allow_infinity=False) | text
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    text, kids, max_size=4), max_leaves=16)
poison = st.sampled_from([float("nan"), float("inf"), float("-inf")])
# rrweb-shaped: mouse interactions (what the clicks query reads), mutations, custom events.
incremental = st.builds(lambda src, rest: {"source": src, **rest}, st.sampled_from([0, 2, 3, 5]),
                        st.dictionaries(text, values, max_size=4))
custom = st.builds(lambda tag, payload: {"tag": tag, "payload": payload}, text, values)
events = st.one_of(
    st.builds(lambda d: {"type": 3, "data": d}, incremental),
    st.builds(lambda d: {"type": 5, "data": d}, custom),
)
frames = st.lists(st.tuples(st.lists(events, min_size=1, max_size=4), st.booleans() | st.none()),
                  min_size=1, max_size=5)

SESSIONS = itertools.count(1)
ACCEPTED: dict[str, list[dict[str, Any]]] = {}  # session id -> events the server must keep


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # No flushes while recording: at the crash, everything is in the write-ahead log only.
    srv = ServerProcess(tmp_path_factory.mktemp("strict") / "data", *TEST_SERVER_ARGS, "--flush-interval", "3600",
                        "--grace-seconds", "0.2").start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop()


@given(frames)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_generated_events_are_relayed_as_strict_json(strict_server: ServerProcess, batches: list) -> None:
    sid = f"strict-{next(SESSIONS)}"
    t = 1_700_000_000_000
    head = session_events(2, t0=t)
    kept: list[dict[str, Any]] = list(head)

    async def go() -> None:
        rec = Recorder(strict_server.ws, sid)
        await rec.connect()
        watcher = await websocket_connect(f"{strict_server.ws}/watch/{sid}")
        await rec.send_events(1, head)
        seq = last_kept = 3 - 1
        seq += 1
        for evs, poisoned in batches:
            evs = [{**e, "timestamp": t + seq + i} for i, e in enumerate(evs)]
            if poisoned is not None:  # NaN or ±Infinity somewhere: not JSON, refused as a whole
                evs[-1] = {**evs[-1], "data": {**evs[-1]["data"], "bad": float("nan") if poisoned
                                               else float("inf")}}
            await rec.send(json.dumps({"type": "events", "seq": seq, "events": evs}))  # allow_nan
            if poisoned is not None:
                closed = await read_until(rec.conn, lambda m: False)  # type: ignore[arg-type]
                assert closed[-1]["code"] == 4400, closed[-1]
                await rec.connect()  # the recorder goes on, resuming its stream
            else:
                kept.extend(evs)
                last_kept = seq + len(evs) - 1
            seq += len(evs)
        frames_seen = await read_until(watcher, lambda m: m.get("type") in ("event", "events") and (
            m["seq"] + len(m.get("events", [None])) - 1 >= last_kept))
        relayed = []
        for f in frames_seen:  # every frame a viewer gets is strict JSON (read_until parsed it)
            if f["type"] == "event":
                relayed.append(f["event"])
            elif f["type"] == "events":
                relayed.extend(f["events"])
        for ev in relayed:
            strict_loads(json.dumps(ev, ensure_ascii=False))
        assert relayed == well_formed(kept)
        await rec.wait_ack(last_kept)
        rec.close()
        watcher.close()

    run_async(go())
    ACCEPTED[sid] = kept


def test_raw_blanks_inside_data_do_not_break_the_log(strict_server: ServerProcess) -> None:
    # Raw tabs, newlines and CRs between tokens are valid JSON; the log's lines are
    # tab-separated. Kept raw, they made recovery (below) drop this frame and everything logged
    # after it in its segment, other sessions' acknowledged events included.
    sid = f"strict-{next(SESSIONS)}"
    t = 1_700_000_000_000
    kept = session_events(2, t0=t) + [
        {"type": 3, "data": {"source": 0, "texts": [{"id": 1, "value": "a\tb\r\nc"}]}, "timestamp": t + 3 + i}
        for i in range(4)]

    async def go() -> None:
        rec = Recorder(strict_server.ws, sid)
        await rec.connect()
        await rec.send_events(1, kept[:2])
        await rec.send(json.dumps({"type": "events", "seq": 3, "events": [kept[2]]}, indent=1))  # one event
        await rec.send(json.dumps({"type": "events", "seq": 4, "events": kept[3:5]}, indent="\t"))
        await rec.send(json.dumps({"type": "events", "seq": 6, "events": [kept[5]]},
                                  separators=(",\r\n", ":\t")))
        await rec.wait_ack(6)
        rec.close()

    run_async(go())
    ACCEPTED[sid] = kept


def test_after_kill_9_and_recovery_every_reader_takes_the_archive(
        strict_server: ServerProcess, browser: Browser) -> None:
    assert ACCEPTED, "the generating test ran first"
    strict_server.kill()
    strict_server.args = ["--flush-interval", "0.3"]
    strict_server.start()
    data = strict_server.data_dir
    wait_for(lambda: list((data / "main" / "events").glob("day=*/*.parquet")), what="the recovered flush")
    # The events API, read strictly: every accepted event, as sent but for lone surrogates.
    for sid, kept in ACCEPTED.items():
        raw = _get(strict_server, f"/api/sessions/{sid}/events")
        assert strict_loads(raw) == well_formed(kept), sid
    # DuckDB over every stored row: json_extract and the README's analyst queries.
    glob = str(data / "main" / "events" / "*" / "*.parquet")
    [rows] = duckdb.sql(f"SELECT count(*), count(json_extract(data, '$')), bool_and(json_valid(data)),"
                        f" bool_and(extra IS NULL OR json_valid(extra)) FROM read_parquet('{glob}')").fetchall()
    assert rows[0] == rows[1] == sum(map(len, ACCEPTED.values())) and rows[2] and rows[3]
    cwd = os.getcwd()
    os.chdir(data.parent)  # the queries say 'data/...'
    try:
        for q in readme_queries():  # each in a fresh connection (one of them ATTACHes the catalog)
            duckdb.connect().execute(q).fetchall()
    finally:
        os.chdir(cwd)
    # A replay in Chromium of the session with the most events.
    sid = max(ACCEPTED, key=lambda s: len(ACCEPTED[s]))
    page = browser.new_page()
    try:
        page.goto(f"{strict_server.http}/sessions/{sid}")
        page.wait_for_selector(".replayer-wrapper iframe", state="attached", timeout=20000)
        assert "Could not load" not in page.inner_text("body")
    finally:
        page.close()


def _get(server: ServerProcess, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(server.http + path, timeout=10) as r:
        return r.read().decode()
