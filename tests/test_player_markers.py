"""Timeline markers and the event list for errors, failed requests, rage and dead clicks (issue
16), live and in replay, in headless Chromium. The session is sent by a WebSocket recorder
speaking the ingest protocol, with the recorder's custom events (pm-spec.md tags), so each case
is exact: 3 clicks in 300 ms on one spot with no DOM change (rage, and 3 dead clicks), then a
click the page answers (not dead)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from streamdom.testing import ServerProcess
from tests.browser import AppServer, app_html, replayer_text
from tests.helpers import TEST_SERVER_ARGS, Recorder, event
from tests.helpers import wait_for as _wait_for


def wait_for(pred: Any, timeout: float = 30, what: str = "condition") -> Any:
    """tests.helpers.wait_for with at least 30 s: pages, recorders and viewers share a loaded machine."""
    return _wait_for(pred, timeout=max(timeout, 30), what=what)

SID = "markers-1"
DOC = {"type": 0, "id": 1, "childNodes": [
    {"type": 1, "name": "html", "publicId": "", "systemId": "", "id": 2},
    {"type": 2, "tagName": "html", "attributes": {}, "id": 3, "childNodes": [
        {"type": 2, "tagName": "head", "attributes": {}, "childNodes": [], "id": 4},
        {"type": 2, "tagName": "body", "attributes": {}, "id": 5, "childNodes": [
            {"type": 2, "tagName": "button", "attributes": {"id": "buy"}, "id": 6,
             "childNodes": [{"type": 3, "textContent": "Buy now", "id": 7}]},
            {"type": 2, "tagName": "div", "attributes": {"id": "out"}, "childNodes": [], "id": 8}]}]}]}


def custom(ts: int, tag: str, **payload: Any) -> dict[str, Any]:
    """A recorder custom event (rrweb type 5)."""
    return {"type": 5, "data": {"tag": tag, "payload": payload}, "timestamp": ts}


def click(ts: int, x: int, y: int) -> dict[str, Any]:
    """A click on the button (MouseInteraction, type Click)."""
    return event(3, ts, source=2, type=2, id=6, x=x, y=y)


class LiveRecorder:
    """A recorder connected for as long as the test wants (its own thread and event loop)."""

    def __init__(self, ws: str) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.rec = Recorder(ws, SID)
        self.seq = 0
        self.call(self.rec.connect())

    def call(self, coro: Any) -> Any:
        """Run `coro` on the recorder's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def send(self, events: list[dict]) -> None:
        """Send events as one frame and wait for the ack."""
        self.call(self.rec.send_events(self.seq + 1, events))
        self.seq += len(events)
        self.call(self.rec.wait_ack(self.seq))

    def close(self) -> None:
        """Leave (the session ends after the server's grace period)."""
        self.loop.call_soon_threadsafe(self.rec.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module."""
    s = ServerProcess(tmp_path_factory.mktemp("markers") / "data", *TEST_SERVER_ARGS).start()
    yield s
    s.stop()


def markers(page: Page) -> dict[str, int]:
    """Timeline markers by kind."""
    kinds = page.evaluate("[...document.querySelectorAll('[data-testid=\"marker\"]')].map(m => m.dataset.kind)")
    return {k: kinds.count(k) for k in set(kinds)}


def listed(page: Page) -> list[tuple[str, str]]:
    """The event list: (kind, text)."""
    return [tuple(x) for x in page.evaluate("""[...document.querySelectorAll('[data-testid="event"]')]
        .map(e => [e.dataset.kind, e.querySelector('.ev-text').textContent])""")]


def test_markers_and_event_list_live_and_replay(srv: ServerProcess, browser: Browser) -> None:
    rec = LiveRecorder(srv.ws)
    t0 = int(time.time() * 1000)
    rec.send([event(4, t0, href="http://shop.test/cart", width=800, height=600),
              event(2, t0 + 1, node=DOC, initialOffset={"left": 0, "top": 0})])
    viewer = browser.new_page(viewport={"width": 1200, "height": 800})
    viewer.goto(f"{srv.http}/sessions/{SID}")
    wait_for(lambda: replayer_text(viewer, "#buy") == "Buy now", timeout=15, what="live snapshot")

    t = int(time.time() * 1000)
    rec.send([custom(t, "streamdom-error", source="error", message="TypeError: cart is undefined", stack="at buy()"),
              custom(t + 5, "streamdom-network", method="POST", url="/api/order", status=500, duration=42,
                     initiator="fetch"),
              custom(t + 6, "streamdom-console", level="warn", message="slow cart", stack=""),
              custom(t + 7, "checkout-started", step=1),
              click(t + 100, 10, 10), click(t + 250, 12, 11), click(t + 400, 11, 14)])
    # Live: the error, the failed request and the rage click show at once; the dead clicks once
    # the tab shows an event more than 1 s after them with no change in between (the server's rule).
    wait_for(lambda: markers(viewer).get("error") == 1 and markers(viewer).get("network") == 1
             and markers(viewer).get("rage") == 1, timeout=15, what="live markers")
    assert "dead" not in markers(viewer)
    t = max(int(time.time() * 1000), t + 1500)
    rec.send([click(t, 200, 200),
              event(3, t + 40, source=0, texts=[], attributes=[], removes=[],
                    adds=[{"parentId": 8, "nextId": None, "node": {"type": 3, "textContent": "thanks", "id": 9}}]),
              event(3, t + 1500, source=1, positions=[{"x": 1, "y": 1, "id": 5, "timeOffset": 0}])])
    wait_for(lambda: replayer_text(viewer, "#out") == "thanks", what="the page answered the click")
    wait_for(lambda: markers(viewer).get("dead") == 3, what="live dead clicks")
    kinds = [k for k, _ in listed(viewer)]
    assert kinds == ["page", "error", "network", "console", "custom", "click", "click", "click", "click"], kinds
    assert ("error", "TypeError: cart is undefined") in listed(viewer)
    assert any(k == "click" and "Buy now" in text for k, text in listed(viewer))
    rec.close()
    wait_for(lambda: srv.get_json(f"/api/sessions/{SID}")["live"] is False, timeout=15, what="ended")
    viewer.close()

    # Replay: the same markers (the answered click is not dead), the filter hides a kind.
    replay = browser.new_page(viewport={"width": 1200, "height": 800})
    replay.goto(f"{srv.http}/sessions/{SID}?t=0")
    wait_for(lambda: len(listed(replay)) == 9, timeout=15, what="replay's event list")
    assert markers(replay) == {"error": 1, "network": 1, "rage": 1, "dead": 3}
    summary = srv.get_json(f"/api/sessions/{SID}")  # the server's counts: one rule, the same figures
    assert (summary["rage_clicks"], summary["dead_clicks"], summary["errors"]) == (1, 3, 1)
    replay.click('[data-filter="click"]')
    assert replay.locator('[data-testid="event"][data-kind="click"]').first.is_hidden()
    assert replay.locator('[data-testid="event"][data-kind="error"]').is_visible()
    # A marker seeks: the error's moment.
    error = replay.locator('[data-testid="marker"][data-kind="error"]')
    error.dispatch_event("click")  # markers of one moment overlap: the topmost would take a real click
    offset = int(error.get_attribute("data-offset") or -1)
    wait_for(lambda: abs(replay.evaluate("window.__streamdom.currentTime()") - offset) <= 1, what="marker seeks")
    replay.close()


# A real page, recorded by the real recorder: a button that throws, one that fetches a missing URL.
FAILING_PAGE = """<button id="boom">Pay</button><button id="load">Load</button>
<script>
document.getElementById('boom').addEventListener('click', () => { throw new TypeError('payment is undefined'); });
document.getElementById('load').addEventListener('click', () => { fetch('/missing.json').catch(() => {}); });
</script>"""


def test_a_thrown_error_and_a_failed_fetch_are_marked(srv: ServerProcess, browser: Browser,
                                                      app_server: AppServer) -> None:
    sid = "markers-real"
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(app_server.add(f"/{sid}.html", app_html(srv.http, sid, FAILING_PAGE)))
    page.wait_for_function("window.StreamDOM && StreamDOM.status().connected")
    page.click("#boom")
    page.click("#load")
    wait_for(lambda: srv.get_json(f"/api/sessions/{sid}")["network_errors"] == 1, what="the failed fetch stored")
    ctx.close()
    wait_for(lambda: srv.get_json(f"/api/sessions/{sid}")["live"] is False, timeout=15, what="ended")

    replay = browser.new_page()
    replay.goto(f"{srv.http}/sessions/{sid}?t=0")
    wait_for(lambda: markers(replay).get("error") == 1 and markers(replay).get("network") == 1,
             what="error and network markers (a short session: under a second)")
    items = listed(replay)
    assert any(k == "error" and "payment is undefined" in text for k, text in items), items
    assert any(k == "network" and "/missing.json" in text and "404" in text for k, text in items), items
    summary = srv.get_json(f"/api/sessions/{sid}")
    assert (summary["errors"], summary["network_errors"]) == (markers(replay)["error"], markers(replay)["network"])
    replay.close()
