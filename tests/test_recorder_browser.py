"""The recorder SDK in headless Chromium against a real server: delivery, navigation, privacy, bundling."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time

import pytest
from playwright.sync_api import Browser
from tornado.websocket import websocket_connect

from streamdom.testing import ROOT, ServerProcess
from tests.browser import AppServer, app_html, recorded_page
from tests.helpers import run_async, wait_for

TICKER = """<div id="n">0</div><script>
let i = 0; setInterval(() => { document.getElementById('n').textContent = String(++i); }, 40);
</script>"""


def status(page) -> dict:
    return page.evaluate("StreamDOM.status()")


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_server_restart_mid_session_loses_and_duplicates_nothing(server: ServerProcess, browser: Browser,
                                                                 app_server: AppServer, how: str) -> None:
    page = recorded_page(browser, app_server, server.http, f"restart-{how}", TICKER)
    wait_for(lambda: status(page)["ackedSeq"] > 10, what="first acks")
    server.stop() if how == "sigterm" else server.kill()
    time.sleep(1.0)  # the page keeps mutating and buffering while the server is down
    server.start(port=server.port)
    wait_for(lambda: status(page)["connected"] and status(page)["ackedSeq"] > 0, timeout=20,
             what="reconnect")
    time.sleep(0.5)
    page.evaluate("StreamDOM.stop()")
    st = status(page)
    wait_for(lambda: status(page)["ackedSeq"] == st["lastSeq"], what="all acked")
    got = server.get_json(f"/api/sessions/restart-{how}/events?meta=1")
    seqs = [g["seq"] for g in got if g["streamId"] == st["streamId"]]
    assert seqs == list(range(1, st["lastSeq"] + 1)), "every event exactly once, in order"
    # The ticker's values, in the order the archive replays them: increasing, none missing.
    ticks = [int(v) for g in got if g["event"]["type"] == 3
             for v in re.findall(r'"textContent":"(\d+)"', json.dumps(g["event"]["data"], separators=(",", ":")))]
    assert len(ticks) > 20 and ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    page.context.close()


def test_navigation_continues_the_same_session_and_stream(server: ServerProcess, browser: Browser,
                                                           app_server: AppServer) -> None:
    # A tab is a stream: the next page load in it goes on numbering the same stream (its id,
    # resume secret and last seq are kept in sessionStorage); another tab is another stream.
    app_server.add("/second.html", app_html(server.http, "nav", "<p>second page</p>"))
    page = recorded_page(browser, app_server, server.http, "nav", '<a id="go" href="/second.html">next</a>')
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="first page recorded")
    first = status(page)
    page.click("#go")
    page.wait_for_url("**/second.html")
    wait_for(lambda: status(page)["ackedSeq"] > first["lastSeq"], what="second page recorded")
    assert status(page)["streamId"] == first["streamId"]
    other = page.context.new_page()  # a second tab of the same session
    other.goto(app_server.origin + "/second.html")
    wait_for(lambda: status(other)["ackedSeq"] >= 2, what="second tab recorded")
    assert status(other)["streamId"] != first["streamId"]
    page.evaluate("StreamDOM.stop()")
    other.evaluate("StreamDOM.stop()")
    events = server.get_json("/api/sessions/nav/events?meta=1")
    mine = [e for e in events if e["streamId"] == first["streamId"]]
    metas = [e["event"]["data"]["href"] for e in mine if e["event"]["type"] == 4]
    assert metas[0].endswith("/nav.html") and metas[-1].endswith("/second.html")
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(set(seqs)), "one numbering across the tab's page loads"
    assert len({e["streamId"] for e in events}) == 2
    listed = [s for s in server.get_json("/api/sessions")["sessions"] if s["id"] == "nav"]
    assert len(listed) == 1 and listed[0]["tabs"] == 2
    page.context.close()


def test_password_never_leaves_the_page(server: ServerProcess, browser: Browser,
                                        app_server: AppServer) -> None:
    secret = "hunter2-Secret!"
    streamed: list[str] = []
    page = recorded_page(browser, app_server, server.http, "privacy",
                         '<input id="name"><input type="password" id="pw"><input id="card" class="x">')
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="snapshot")

    connected = threading.Event()
    last_seq: list[int] = []  # the stream's last seq, once the page has stopped recording

    async def watch() -> None:
        # Everything the server relays for the session, up to the last event the page recorded.
        conn = await websocket_connect(f"{server.ws}/watch/privacy")
        connected.set()
        seen = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (last_seq and seen >= last_seq[0]):
            try:
                msg = await asyncio.wait_for(conn.read_message(), 0.2)
            except TimeoutError:
                continue
            if msg is None:
                break
            streamed.append(msg)
            frame = json.loads(msg)
            if frame["type"] == "event":
                seen = max(seen, frame["seq"])
        conn.close()

    t = threading.Thread(target=lambda: run_async(watch()))
    t.start()
    assert connected.wait(10), "watcher connected"
    page.type("#pw", secret)
    page.type("#name", "Jane Q. Public")
    page.type("#card", "4111111111111111")
    page.evaluate("StreamDOM.stop()")
    wait_for(lambda: status(page)["ackedSeq"] == status(page)["lastSeq"], what="all acked")
    last_seq.append(status(page)["lastSeq"])
    t.join()
    relayed = [f["seq"] for f in map(json.loads, streamed) if f["type"] == "event"]
    assert relayed and relayed[-1] == last_seq[0], "watched to the end"
    stored = json.dumps(server.get_json("/api/sessions/privacy/events"))
    assert any('"source":5' in m or '"source": 5' in m for m in streamed), "input events were streamed"
    for text in (secret, "Jane Q. Public", "4111111111111111"):
        assert text not in stored and not any(text in m for m in streamed), text
    server.stop()  # everything committed to the archive
    files = list((server.data_dir / "main").glob("*/day=*/*.parquet"))
    assert files
    for f in files:
        assert secret.encode() not in f.read_bytes()
    page.context.close()


def test_import_as_written_bundled_by_esbuild(server: ServerProcess, browser: Browser,
                                              app_server: AppServer, tmp_path) -> None:
    entry = tmp_path / "app.ts"
    entry.write_text(
        f"import StreamDOM from '{ROOT}/recorder/StreamDOM.ts'\n"
        f"StreamDOM.init({{ sessionId: 'bundled', endpoint: '{server.ws}/ingest' }})\n"
        "document.body.append('bundled app')\n")
    out = tmp_path / "app.js"
    subprocess.run(["npx", "esbuild", str(entry), "--bundle", f"--outfile={out}"], cwd=ROOT,
                   check=True, capture_output=True)
    app_server.add("/bundled/app.js", out.read_text(), "text/javascript")
    url = app_server.add("/bundled/", '<!doctype html><body><p>hi</p><script src="app.js"></script></body>')
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(url)
    wait_for(lambda: any(s["id"] == "bundled" for s in server.get_json("/api/sessions")["sessions"]),
             what="bundled recorder session")
    wait_for(lambda: any(e["type"] == 2 for e in server.get_json("/api/sessions/bundled/events")),
             what="full snapshot from the bundled recorder")
    ctx.close()
