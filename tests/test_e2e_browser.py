"""End to end in headless Chromium: record → watch live → archive → restart → replay."""

from __future__ import annotations

import re

from playwright.sync_api import Browser

from streamdom.testing import ServerProcess
from tests.browser import AppServer, recorded_page, replayer_text
from tests.helpers import wait_for

COUNTER_PAGE = '<h1>Shop</h1><div id="counter">0</div><input id="name"><input type="password" id="pw">'


def test_record_watch_restart_replay(server: ServerProcess, browser: Browser,
                                     app_server: AppServer) -> None:
    app = recorded_page(browser, app_server, server.http, "e2e-1", COUNTER_PAGE)
    wait_for(lambda: any(s["id"] == "e2e-1" and s["live"]
                         for s in server.get_json("/api/sessions")["sessions"]), what="live session")

    viewer = browser.new_page()
    viewer.goto(f"{server.http}/sessions/e2e-1")
    wait_for(lambda: replayer_text(viewer, "#counter") == "0", timeout=15, what="snapshot in viewer")

    app.evaluate("document.getElementById('counter').textContent = '42'; 0")
    wait_for(lambda: replayer_text(viewer, "#counter") == "42", timeout=10, what="live DOM change")
    latency = viewer.locator('[data-testid="latency"]')
    wait_for(lambda: re.search(r"\d+ ms delayed", latency.text_content() or ""), timeout=15,
             what="latency display")

    # The list shows it live, then not live once the page closes (no reload).
    listing = browser.new_page()
    listing.goto(server.http + "/")
    row = listing.locator('[data-session-id="e2e-1"]')
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-live") == "true"
    app.context.close()
    wait_for(lambda: row.get_attribute("data-live") == "false", timeout=15, what="not live in list")

    # Restart on the same data dir: the session replays from Parquet with the same final DOM.
    assert server.stop() == 0
    server.start()
    events = server.get_json("/api/sessions/e2e-1/events")
    assert {4, 2} <= {e["type"] for e in events}
    replay = browser.new_page()
    replay.goto(f"{server.http}/sessions/e2e-1")
    replay.locator(".replayer-wrapper iframe").wait_for(timeout=15_000)
    wait_for(lambda: replayer_text(replay, "#counter") == "42", timeout=30, what="replayed final DOM")
    for p in (viewer, listing, replay):
        p.close()
