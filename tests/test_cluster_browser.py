"""Cluster mode in headless Chromium: a page recorded through node A, watched on node B; node A
killed mid-session, the page's recorder moves on to B by itself and the player keeps going."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser

from streamdom.testing_nats import NatsCluster
from tests.browser import AppServer, recorded_page, replayer_text
from tests.cluster import node
from tests.helpers import wait_for

COUNTER_PAGE = '<h1>Shop</h1><div id="counter">0</div>'


def test_cross_node_watch_in_chromium_survives_kill_9(nats1: NatsCluster, tmp_path: Path,
                                                      browser: Browser, app_server: AppServer) -> None:
    a = node(tmp_path, "a", nats1.bus).start()
    b = node(tmp_path, "b", nats1.bus).start()
    endpoints = f", endpoint: ['{a.ws}/ingest', '{b.ws}/ingest']"
    app = recorded_page(browser, app_server, a.http, "xnode-1", COUNTER_PAGE, options=endpoints)
    wait_for(lambda: any(s["id"] == "xnode-1" and s["live"]
                         for s in b.get_json("/api/sessions")["sessions"]), what="live on B")

    viewer = browser.new_page()
    viewer.goto(f"{b.http}/sessions/xnode-1")
    wait_for(lambda: replayer_text(viewer, "#counter") == "0", timeout=15, what="snapshot on B")
    app.evaluate("document.getElementById('counter').textContent = '1'; 0")
    wait_for(lambda: replayer_text(viewer, "#counter") == "1", timeout=10, what="live change via A")

    a.kill()
    app.evaluate("document.getElementById('counter').textContent = '2'; 0")
    wait_for(lambda: replayer_text(viewer, "#counter") == "2", timeout=20,
             what="change after A died, recorded through B")
    app.context.close()
    viewer.close()
    b.stop()
