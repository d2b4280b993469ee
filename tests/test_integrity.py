"""Only the page that owns a session writes to it, and what it writes stays strict JSON.

Each test replays a reproduction from the adversarial review (issue 12: 1, 2 and 9's stream id)
against a real server and checks the refusal, and that the well-behaved recorder on the same
server keeps every event.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from tornado.websocket import websocket_connect

from streamdom.ingest import access
from streamdom.testing import ROOT, ServerProcess
from tests.helpers import (
    TEST_SERVER_ARGS,
    Recorder,
    event,
    last_seq,
    read_until,
    record,
    run_async,
    session_events,
    wait_for,
    watched,
)
from tests.test_analyst_queries import readme_queries

SECRET = "s3cret-for-tests"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with an ingest secret (from the environment, as the README suggests)."""
    srv = ServerProcess(tmp_path_factory.mktemp("guarded") / "data", *TEST_SERVER_ARGS, "--flush-interval", "0.3",
                        env={"STREAMDOM_INGEST_SECRET": SECRET}).start()
    yield srv
    srv.stop()


def cli_token(session_id: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "streamdom", "token", session_id, "--ingest-secret", SECRET,
                          *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


async def refused(rec: Recorder) -> tuple[int | None, str | None]:
    """Say hello; return the close code and reason (the hello must be refused)."""
    welcome = await rec.connect()
    assert welcome["type"] == "__closed__", f"not refused: {welcome}"
    return rec.close_code()


def test_with_an_ingest_secret_only_a_token_for_the_session_opens_it(guarded: ServerProcess) -> None:
    evs = session_events(10)

    async def go() -> None:
        victim = Recorder(guarded.ws, "victim", token=cli_token("victim"))
        assert (await victim.connect())["type"] == "welcome"
        await victim.send_events(1, evs[:5])
        # The reproduction: a second connection that knows only the session id.
        for token in (None, cli_token("other-session"), cli_token("victim", "--ttl", "-10"),
                      "9999999999.forged", "garbage"):
            code, reason = await refused(Recorder(guarded.ws, "victim", "evil", token=token))
            assert code == 4401 and "token" in (reason or ""), (token, code, reason)
        await victim.send_events(6, evs[5:])
        await victim.wait_ack(10)
        victim.close()

    run_async(go())
    assert guarded.get_json("/api/sessions/victim/events") == evs


def test_tokens_minted_as_the_readme_shows_open_the_session(guarded: ServerProcess) -> None:
    readme = (ROOT / "README.md").read_text()
    python = re.search(r"( *)```python\n(\1# mint an ingest token.*?)\1```", readme, flags=re.S)
    node = re.search(r"( *)```js\n(\1// mint an ingest token.*?)\1```", readme, flags=re.S)
    assert python and node, "the README shows minting a token in Python and in Node"
    scope: dict[str, object] = {"SECRET": SECRET, "session_id": "readme-py"}
    exec(textwrap.dedent(python.group(2)), scope)  # noqa: S102 - the README's snippet, as pasted
    js = (f"const SECRET = {json.dumps(SECRET)}, sessionId = 'readme-js';\n"
          f"{textwrap.dedent(node.group(2))}\nconsole.log(token);")
    node_token = subprocess.run(["node", "-e", js], capture_output=True, text=True, timeout=60,
                                check=True).stdout.strip()
    evs = session_events(3)

    async def go(sid: str, token: str) -> None:
        rec = Recorder(guarded.ws, sid, token=token)
        assert (await rec.connect())["type"] == "welcome"
        await rec.send_events(1, evs)
        await rec.wait_ack(3)
        rec.close()

    for sid, token in (("readme-py", str(scope["token"])), ("readme-js", node_token)):
        assert access.verify(SECRET, sid, token)
        run_async(go(sid, token))


def test_a_stream_belongs_to_the_connection_that_opened_it(server: ServerProcess) -> None:
    evs = session_events(40)
    elsewhere = record(server.ws, "other", session_events(2))  # a real secret, of another stream

    async def go() -> None:
        victim = Recorder(server.ws, "victim")
        await victim.connect()
        viewer = await websocket_connect(f"{server.ws}/watch/victim")
        await read_until(viewer, lambda m: m["type"] == "caughtup")
        await victim.send_events(1, evs[:10])
        # The reproduction: the victim's stream id, no resume secret (or a wrong one), then the
        # frame with seq 2**53 that used to make the server drop every later real event.
        for resume in (None, "wrong", elsewhere):
            code, reason = await refused(Recorder(server.ws, "victim", "s1", resume=resume))
            assert code == 4409, (resume, code, reason)
        # A new stream of the session is taken, as a new tab would be, told apart by its id; a
        # seq far past what it sent is refused there too.
        evil = Recorder(server.ws, "victim", "evil")
        assert (await evil.connect())["type"] == "welcome"
        await evil.send_events(1, [event(3, 1, source=2, type=2, id=1, x=0, y=0)])
        await evil.send_events(2**53, [event(3, 2, source=2, type=2, id=1, x=0, y=0)])
        closed = await read_until(evil.conn, lambda m: False)  # type: ignore[arg-type]
        assert closed[-1]["code"] == 4409 and "jumps" in closed[-1]["reason"]
        await victim.send_events(11, evs[10:])
        frames = await read_until(viewer, lambda m: m.get("streamId") == "s1" and last_seq(m) == 40)
        assert watched([f for f in frames if f.get("streamId") == "s1"]) == evs
        assert [f["streamId"] for f in frames if f["type"] in ("event", "events")].count("evil") == 1
        await victim.wait_ack(40)
        # The victim's own page, reconnecting with its secret, takes its stream back at once.
        back = Recorder(server.ws, "victim", "s1", resume=victim.resume)
        assert (await back.connect())["ackedSeq"] == 40
        gone = await read_until(victim.conn, lambda m: False)  # type: ignore[arg-type]
        assert gone[-1]["code"] == 4409
        back.close()
        viewer.close()

    run_async(go())
    got = server.get_json("/api/sessions/victim/events?meta=1")
    assert [g["event"] for g in got if g["streamId"] == "s1"] == evs
    assert [g["seq"] for g in got if g["streamId"] == "evil"] == [1]


def test_nan_is_refused_and_a_lone_surrogate_is_stored_as_a_replacement_character(
        server: ServerProcess) -> None:
    evs = session_events(4, href="http://shop.test/")
    click = event(3, 1_700_000_000_100, source=2, type=2, id=5, x=1, y=1, label="cut \ud83d")

    async def go() -> None:
        rec = Recorder(server.ws, "poison")
        await rec.connect()
        await rec.send_events(1, evs)
        await rec.wait_ack(4)
        # The reproduction: an event with NaN used to be acked, and the events API then
        # returned invalid JSON. Now the frame is refused and nothing of it is kept.
        await rec.send(json.dumps({"type": "events", "seq": 5, "events": [
            event(3, 1_700_000_000_050, source=3, id=1, x=float("nan"), y=0)]}))
        closed = await read_until(rec.conn, lambda m: False)  # type: ignore[arg-type]
        assert closed[-1]["code"] == 4400 and closed[-1]["reason"].startswith("seq 5: ")
        await rec.connect()
        await rec.send_events(6, [click])
        await rec.wait_ack(6)
        rec.close()

    run_async(go())
    raw = server.get_json("/api/sessions/poison/events")
    assert raw == evs + [{**click, "data": {**click["data"], "label": "cut \ufffd"}}]
    # The README's "clicks per page" query used to fail for the whole archive (no low surrogate).
    wait_for(lambda: not server.get_json("/api/sessions/poison")["live"], what="session ended")
    server.stop()
    cwd = os.getcwd()
    os.chdir(server.data_dir.parent)
    try:
        results = [duckdb.sql(q).fetchall() for q in readme_queries()]
    finally:
        os.chdir(cwd)
    assert results[2] == [("http://app.test/", 3)]  # two clicks in session_events, and this one


def test_a_stream_id_with_a_trailing_newline_is_refused(server: ServerProcess) -> None:
    # The reproduction: "evil\n" passed the id check ($ matches before a final newline) and
    # made /watch frames that were not valid JSON, so viewers silently dropped that stream.
    async def go() -> None:
        for sid, stream in (("victim\n", "s1"), ("ok", "evil\n")):
            code, reason = await refused(Recorder(server.ws, sid, stream))
            assert code == 4400 and "Id must be" in (reason or ""), (sid, stream, reason)

    run_async(go())
    record(server.ws, "ok", session_events(3))
    assert [s["id"] for s in server.get_json("/api/sessions")["sessions"]] == ["ok"]


def test_resume_secrets_survive_a_restart(server: ServerProcess, tmp_path: Path) -> None:
    evs = session_events(10)
    resume = record(server.ws, "again", evs[:5])
    server.stop()
    server.start()

    async def go() -> None:
        assert (await refused(Recorder(server.ws, "again")))[0] == 4409
        rec = Recorder(server.ws, "again", resume=resume)
        assert (await rec.connect())["ackedSeq"] == 5
        await rec.send_events(6, evs[5:])
        await rec.wait_ack(10)
        rec.close()

    run_async(go())
    assert server.get_json("/api/sessions/again/events") == evs
    assert oct((server.data_dir / access.KEY_FILE).stat().st_mode & 0o777) == "0o600"
