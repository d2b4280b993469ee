"""The player in headless Chromium (issue 16): every tab of a session, live and in replay, the
event list (a click seeks), share links (live and replay), exact seeks to the end."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route

from streamdom.testing import ServerProcess
from tests.browser import AppServer, app_html, replayer_text
from tests.helpers import TEST_SERVER_ARGS, Recorder, record, session_events
from tests.helpers import wait_for as _wait_for


def wait_for(pred: Any, timeout: float = 30, what: str = "condition") -> Any:
    """tests.helpers.wait_for with at least 30 s: pages, recorders and viewers share a loaded machine."""
    return _wait_for(pred, timeout=max(timeout, 30), what=what)

# One page per tab: its <h1> names the tab; typing a todo and pressing Add appends an <li>.
TAB_PAGE = """<h1 id="title">%s</h1><input id="new" placeholder="What needs doing?">
<button id="add">Add</button><ul id="list"></ul>
<script>document.getElementById('add').onclick = () => { const li = document.createElement('li');
  li.textContent = 'item ' + (document.querySelectorAll('#list li').length + 1);
  document.getElementById('list').appendChild(li); };</script>"""

# 20 items, all removed by one last DOM change: the "seek to the end loses it" case.
CLEAR_PAGE = """<div id="app"><h2>Todos</h2><ul id="todos"></ul><p id="footer">20 left</p></div>
<script>const ul = document.getElementById('todos');
for (let i = 1; i <= 20; i++) { const li = document.createElement('li'); li.textContent = 'todo ' + i; ul.appendChild(li); }
window.clearAll = () => { ul.replaceChildren(); document.getElementById('footer').textContent = 'all done'; };</script>"""

DOM_SHAPE = """(root) => [...root.querySelectorAll('#app *')].map(
    e => e.tagName + '#' + e.id + ':' + (e.children.length ? '' : e.textContent))"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module's sessions."""
    s = ServerProcess(tmp_path_factory.mktemp("tabs") / "data", *TEST_SERVER_ARGS).start()
    yield s
    s.stop()


def stored_summary(srv: ServerProcess, sid: str) -> dict:
    """The session's summary ({} while the server does not know it yet)."""
    try:
        return srv.get_json(f"/api/sessions/{sid}")
    except HTTPError:
        return {}


def stored(srv: ServerProcess, sid: str) -> str:
    """The session's stored events as text ('' while the server does not know the session yet)."""
    try:
        return json.dumps(srv.get_json(f"/api/sessions/{sid}/events"))
    except HTTPError:
        return ""


def tabs(page: Page) -> list[dict]:
    """The tab bar: stream id, shown, user's tab."""
    return page.evaluate("""[...document.querySelectorAll('[data-testid="tab"]')].map(t => (
        {id: t.dataset.streamId, active: t.dataset.active === 'true', focus: t.dataset.focus === 'true'}))""")


def shown_title(page: Page) -> str | None:
    """The <h1> of the tab the player shows."""
    return replayer_text(page, "#title")


def add_todo(tab: Page) -> None:
    """The user acts in `tab`: types and clicks Add."""
    tab.fill("#new", "x")
    tab.click("#add")


def open_tabs(browser: Browser, app: AppServer, srv: ServerProcess, sid: str) -> tuple[BrowserContext, Page, Page]:
    """Two tabs of one browser recording the same session id."""
    ctx = browser.new_context()
    one = ctx.new_page()
    one.goto(app.add(f"/{sid}-1.html", app_html(srv.http, sid, TAB_PAGE % "Tab one")))
    two = ctx.new_page()
    two.goto(app.add(f"/{sid}-2.html", app_html(srv.http, sid, TAB_PAGE % "Tab two")))
    # The player's URL is a 404 page until the server knows the session.
    wait_for(lambda: "live" in stored_summary(srv, sid) and len(srv.get_json(f"/api/sessions/{sid}/events?meta=1")) >= 2,
             timeout=15, what="the session known")
    return ctx, one, two


def share_link(page: Page) -> str:
    """Click "Copy link at this moment" and return the link it made."""
    page.click('[data-testid="share"]')
    wait_for(lambda: page.get_attribute('[data-testid="share"]', "data-url"), what="share link")
    url = page.get_attribute('[data-testid="share"]', "data-url")
    assert url
    page.evaluate("delete document.querySelector('[data-testid=\"share\"]').dataset.url")
    return url


def test_two_tabs_live_then_replay(srv: ServerProcess, browser: Browser, app_server: AppServer) -> None:
    ctx, one, two = open_tabs(browser, app_server, srv, "tabs-1")
    viewer = browser.new_page(viewport={"width": 1200, "height": 800})
    viewer.goto(f"{srv.http}/sessions/tabs-1")
    wait_for(lambda: len(tabs(viewer)) == 2, timeout=15, what="two tabs in the tab bar")
    # Nobody has acted yet: the idle session shows its last event's delay, not "measuring…".
    latency = viewer.locator('[data-testid="latency"]')
    wait_for(lambda: re.search(r"^\d+ ms delayed \(last event\)", latency.text_content() or ""), timeout=15,
             what="an idle session's last delay")

    # Follow the user (default): the player shows the tab the user acts in, live.
    add_todo(one)
    wait_for(lambda: shown_title(viewer) == "Tab one" and replayer_text(viewer, "#list") == "item 1",
             timeout=15, what="tab one shown live")
    one_id = next(t["id"] for t in tabs(viewer) if t["active"])
    add_todo(two)
    wait_for(lambda: shown_title(viewer) == "Tab two", timeout=15, what="switch to tab two")
    two_id = next(t["id"] for t in tabs(viewer) if t["active"])
    assert two_id != one_id and next(t for t in tabs(viewer) if t["id"] == two_id)["focus"]

    # Pin tab one: what is typed there shows although the user is in tab two.
    viewer.click(f'[data-testid="tab"][data-stream-id="{one_id}"]')
    wait_for(lambda: shown_title(viewer) == "Tab one", what="pinned tab one")
    add_todo(one)
    wait_for(lambda: replayer_text(viewer, "#list") == "item 1item 2", what="tab one's second item live")
    add_todo(two)
    viewer.keyboard.press("f")  # follow the user again
    wait_for(lambda: shown_title(viewer) == "Tab two" and replayer_text(viewer, "#list") == "item 1item 2",
             what="following tab two again")

    # Live share link: opens a rewind at that moment.
    link = share_link(viewer)
    t = int(parse_qs(urlparse(link).query)["t"][0])
    rewound = browser.new_page()
    rewound.goto(link)
    wait_for(lambda: rewound.evaluate("window.__streamdom.mode") == "rewind", timeout=15, what="rewind from link")
    assert abs(rewound.evaluate("window.__streamdom.currentTime()") - t) <= 1
    rewound.close()
    ctx.close()
    wait_for(lambda: srv.get_json("/api/sessions/tabs-1")["live"] is False, timeout=15, what="ended")
    viewer.close()

    # Replay: both tabs, the followed one switching with the user; a tab button pins.
    replay = browser.new_page(viewport={"width": 1200, "height": 800})
    replay.goto(f"{srv.http}/sessions/tabs-1?t=0")
    wait_for(lambda: len(tabs(replay)) == 2 and shown_title(replay) is not None, timeout=15, what="replay")
    items = replay.evaluate("""[...document.querySelectorAll('[data-testid="event"][data-kind="click"]')]
        .map(e => [Number(e.dataset.offset), e.querySelector('.ev-tab').textContent])""")
    assert [tab for _, tab in items] == ["tab 1", "tab 2", "tab 1", "tab 2"], items
    clicks = replay.locator('[data-testid="event"][data-kind="click"]')
    for i, want in enumerate(["Tab one", "Tab two", "Tab one", "Tab two"]):
        clicks.nth(i).click()  # seeks to the click: the tab the user was in shows
        wait_for(lambda w=want: shown_title(replay) == w, what=f"{want} at click {i + 1}")
    replay.click(f'[data-testid="tab"][data-stream-id="{one_id}"]')
    wait_for(lambda: shown_title(replay) == "Tab one" and replayer_text(replay, "#list") == "item 1item 2",
             what="pinned tab one in replay")
    assert next(t for t in tabs(replay) if t["id"] == one_id)["active"]
    replay.close()


def test_tabs_numbered_in_the_order_the_user_opened_them(srv: ServerProcess, browser: Browser) -> None:
    """The tab opened second reached the server first (a slow first tab): it is still tab 2, and
    every item's offset counts from the first tab's start."""
    t0 = int(time.time() * 1000) - 60_000
    record(srv.ws, "tabs-order", session_events(4, t0 + 5_000, href="http://app.test/second"), stream_id="b")
    record(srv.ws, "tabs-order", session_events(4, t0, href="http://app.test/first"), stream_id="a")
    wait_for(lambda: srv.get_json("/api/sessions/tabs-order")["live"] is False, what="ended")
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(f"{srv.http}/sessions/tabs-order?t=0")
    pages = page.locator('[data-testid="event"][data-kind="page"]')
    wait_for(lambda: pages.count() == 2 and len(tabs(page)) == 2, timeout=15, what="both page loads listed")
    listed = page.evaluate("""[...document.querySelectorAll('[data-testid="event"][data-kind="page"]')]
        .map(e => [e.querySelector('.ev-text').textContent, e.querySelector('.ev-tab').textContent,
                   Number(e.dataset.offset)])""")
    # The page load is listed at its full snapshot, 1 ms after its Meta.
    assert listed == [["http://app.test/first", "tab 1", 1], ["http://app.test/second", "tab 2", 5_001]], listed
    assert [t["id"] for t in tabs(page)] == ["a", "b"]
    page.close()


def open_stream(srv: ServerProcess, sid: str, stream_id: str, events: list[dict]) -> Callable[[], None]:
    """Record `events` on a stream that stays connected; return what closes it."""
    acked, close = threading.Event(), threading.Event()

    async def go() -> None:
        rec = Recorder(srv.ws, sid, stream_id)
        await rec.connect()
        await rec.send_events(1, events)
        await rec.wait_ack(len(events))
        acked.set()
        await asyncio.to_thread(close.wait)
        rec.close()

    thread = threading.Thread(target=asyncio.run, args=(go(),))
    thread.start()
    assert acked.wait(30), "the stream's events were not acknowledged"

    def stop() -> None:
        close.set()
        thread.join()
    return stop


def test_a_session_ending_as_the_player_opens_replays(srv: ServerProcess, browser: Browser) -> None:
    """The page's summary said live, but the session ended before the live feed said hello, so no
    backlog will come: the player loads the history itself and opens at ?t=."""
    sid = "ends-on-open"
    t0 = int(time.time() * 1000) - 60_000
    record(srv.ws, sid, session_events(4, t0, href="http://app.test/earlier"), stream_id="a")
    wait_for(lambda: srv.get_json(f"/api/sessions/{sid}")["live"] is False, what="first stream ended")
    said_live: list[bool] = []

    def stale_summary(route: Route) -> None:
        if said_live:
            route.continue_()
            return
        stop = open_stream(srv, sid, "b", session_events(4, t0 + 5_000, href="http://app.test/later"))
        response = route.fetch()  # the session is live now: the page acts on this answer
        said_live.append(response.json()["live"])
        stop()
        wait_for(lambda: srv.get_json(f"/api/sessions/{sid}")["live"] is False, what="ended again")
        route.fulfill(response=response)

    page = browser.new_page(viewport={"width": 1200, "height": 800})
    feeds: list[str] = []
    page.on("websocket", lambda ws: feeds.append(ws.url))
    page.route(lambda url: urlparse(url).path == f"/api/sessions/{sid}", stale_summary)
    page.goto(f"{srv.http}/sessions/{sid}?t=0")
    pages = page.locator('[data-testid="event"][data-kind="page"]')
    wait_for(lambda: pages.count() == 2, what="the history loaded")
    assert said_live == [True]
    wait_for(lambda: page.evaluate("window.__streamdom.mode") == "replay", what="replay")
    assert page.evaluate("window.__streamdom.currentTime()") == 0
    # The feed said "not live" and closed (1000): it stays closed. A reconnect would come within
    # ~0.6 s (ws.ts' first backoff), so 2 s without one shows there is no reconnect loop.
    page.wait_for_timeout(2000)
    assert [urlparse(u).path for u in feeds] == [f"/watch/{sid}"], feeds
    page.close()


def test_event_list_click_seeks_and_share_round_trips(srv: ServerProcess, browser: Browser,
                                                      app_server: AppServer) -> None:
    ctx, one, _two = open_tabs(browser, app_server, srv, "tabs-2")
    for _ in range(3):
        add_todo(one)
    ctx.close()
    wait_for(lambda: srv.get_json("/api/sessions/tabs-2")["live"] is False, timeout=15, what="ended")
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(f"{srv.http}/sessions/tabs-2?t=0")
    clicks = page.locator('[data-testid="event"][data-kind="click"]')
    wait_for(lambda: clicks.count() == 3, timeout=15, what="three clicks listed")
    assert '"Add" (button#add)' in clicks.nth(1).inner_text()  # the recorder's text, our selector
    # Tab two's page load: the player seeks there and shows tab two (the user's tab then).
    page.locator('[data-testid="event"][data-kind="page"]').nth(1).click()
    wait_for(lambda: shown_title(page) == "Tab two", what="seek to tab two's page load")
    # The third click: its moment shows two items at least (its own may land a ms later).
    clicks.nth(2).click()
    offset = int(clicks.nth(2).get_attribute("data-offset") or -1)
    wait_for(lambda: replayer_text(page, "#list") in ("item 1item 2", "item 1item 2item 3"),
             what="seek to the third click")
    shown = replayer_text(page, "#list")
    assert abs(page.evaluate("window.__streamdom.currentTime()") - offset) <= 1
    assert "current" in (clicks.nth(2).get_attribute("class") or "")

    link = share_link(page)
    again = browser.new_page()
    again.goto(link)
    wait_for(lambda: replayer_text(again, "#list") == shown, timeout=15, what="shared moment")
    assert abs(again.evaluate("window.__streamdom.currentTime()") - offset) <= 1
    again.close()
    page.close()


def test_seek_to_the_end_shows_the_last_change(srv: ServerProcess, browser: Browser,
                                               app_server: AppServer) -> None:
    ctx = browser.new_context()
    app = ctx.new_page()
    app.goto(app_server.add("/clear.html", app_html(srv.http, "clear-1", CLEAR_PAGE)))
    # The 20 items are stored before the one change that removes them all.
    wait_for(lambda: "todo 20" in stored(srv, "clear-1"), what="items stored")
    app.evaluate("clearAll(); 0")
    recorded = app.evaluate(f"({DOM_SHAPE})(document)")
    wait_for(lambda: "all done" in stored(srv, "clear-1"), what="last change stored")
    ctx.close()
    wait_for(lambda: srv.get_json("/api/sessions/clear-1")["live"] is False, timeout=15, what="ended")

    page = browser.new_page()
    page.goto(f"{srv.http}/sessions/clear-1?t=99999999")  # past the end: the last frame
    wait_for(lambda: replayer_text(page, "#footer") is not None, timeout=15, what="replay")
    shape = f"() => ({DOM_SHAPE})(document.querySelector('.replayer-wrapper iframe').contentDocument)"
    wait_for(lambda: page.evaluate(shape) == recorded, timeout=10, what="the recorded page's final DOM")
    # And the End of the timeline by keyboard from the start: the same DOM.
    page.goto(f"{srv.http}/sessions/clear-1?t=0")
    wait_for(lambda: replayer_text(page, "#footer") == "20 left", timeout=15, what="start")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowRight")
    wait_for(lambda: page.evaluate(shape) == recorded, timeout=10, what="final DOM after → to the end")
    page.close()
