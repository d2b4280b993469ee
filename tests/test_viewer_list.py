"""The PM viewer's session list in headless Chromium, against a real server and real recorders."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Browser, Page
from tornado.websocket import websocket_connect

from streamdom.testing import ServerProcess
from tests.browser import AppServer, recorded_page
from tests.helpers import TEST_SERVER_ARGS, Recorder, run_async, session_events, wait_for

CHROME_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI_IOS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")


def record_finished(server: ServerProcess, session_id: str, url: str, user_agent: str,
                    n: int = 5) -> None:
    """A short session sent by a real WebSocket recorder with the given page URL, then closed."""

    async def go() -> None:
        rec = Recorder(server.ws, session_id)
        rec.conn = await websocket_connect(rec.url)
        await rec.send({"type": "hello", "sessionId": session_id, "streamId": session_id + "-tab",
                        "url": url, "userAgent": user_agent})
        assert (await rec.recv())["type"] == "welcome"
        await rec.send_events(1, session_events(n, t0=int(time.time() * 1000), href=url))
        await rec.wait_ack(n)
        rec.close()

    run_async(go())


def row_ids(page: Page) -> list[str]:
    """Session ids of the rows currently in the list, in order."""
    return page.eval_on_selector_all("#list [data-session-id]", "els => els.map(e => e.dataset.sessionId)")


def open_list(browser: Browser, server: ServerProcess) -> Page:
    """The list page, with a marker that a reload would wipe."""
    page = browser.new_page(viewport={"width": 1100, "height": 560})
    page.goto(server.http + "/")
    page.evaluate("window.__noReload = 1")
    return page


def test_empty_state_shows_the_two_line_snippet(server: ServerProcess, browser: Browser) -> None:
    page = open_list(browser, server)
    empty = page.locator('[data-testid="empty"]')
    empty.wait_for(state="visible", timeout=10_000)
    text = empty.inner_text()
    assert "import StreamDOM from './StreamDOM.ts'" in text
    assert "StreamDOM.init(" in text
    assert row_ids(page) == []
    page.close()


def test_new_session_appears_live_then_ends_without_reload(server: ServerProcess, browser: Browser,
                                                           app_server: AppServer) -> None:
    page = open_list(browser, server)
    page.locator('[data-testid="empty"]').wait_for(state="visible", timeout=10_000)

    app = recorded_page(browser, app_server, server.http, "list-live-1", "<h1>Checkout</h1>")
    row = page.locator('[data-session-id="list-live-1"]')
    row.wait_for(timeout=20_000)
    assert row.get_attribute("data-live") == "true"
    assert page.locator('[data-testid="empty"]').is_hidden()
    assert "/list-live-1.html" in row.inner_text()  # the page URL from the recorder's hello

    app.context.close()  # the recorder leaves; the server's grace period is 0.5 s
    wait_for(lambda: row.get_attribute("data-live") == "false", timeout=10, what="row flips to ended")
    assert page.evaluate("window.__noReload") == 1, "the list page was reloaded"
    page.close()


def test_filter_by_id_and_url(server: ServerProcess, browser: Browser, app_server: AppServer) -> None:
    record_finished(server, "cart-7f3a", "https://shop.example/cart", CHROME_MAC, n=42)
    record_finished(server, "checkout-19bc", "https://shop.example/checkout?step=2", FIREFOX_WIN, n=187)
    record_finished(server, "blog-d04e", "https://blog.example/posts/streaming-dom", SAFARI_IOS, n=12)
    app = recorded_page(browser, app_server, server.http, "signup-live-a1", "<h1>Sign up</h1>")

    page = open_list(browser, server)
    ids = {"cart-7f3a", "checkout-19bc", "blog-d04e", "signup-live-a1"}
    wait_for(lambda: set(row_ids(page)) == ids, timeout=10, what="all four rows")
    live = page.locator('[data-session-id="signup-live-a1"]')
    wait_for(lambda: live.get_attribute("data-live") == "true", timeout=10, what="live row")
    assert row_ids(page)[0] == "signup-live-a1", "live sessions come first"

    flt = page.locator('[data-testid="filter"]')
    no_match = page.locator("#no-match")
    cases = [
        ("blog-d0", {"blog-d04e"}),                        # by id
        ("CHECKOUT", {"checkout-19bc"}),                   # by id, case-insensitive
        ("shop.example", {"cart-7f3a", "checkout-19bc"}),  # by URL substring (not in any id)
        ("step=2", {"checkout-19bc"}),                     # the URL's query part
        ("/posts/", {"blog-d04e"}),
    ]
    for text, want in cases:
        flt.fill(text)
        wait_for(lambda want=want: set(row_ids(page)) == want, timeout=5, what=f"filter {text!r} -> {want}")
    flt.fill("signup-live-a1.html")  # only in the live page's URL (…/signup-live-a1.html)
    wait_for(lambda: row_ids(page) == ["signup-live-a1"], timeout=5, what="filter by the app page URL")
    flt.fill("no-such-thing")
    wait_for(lambda: row_ids(page) == [], timeout=5, what="no rows")
    assert no_match.is_visible()
    flt.fill("")
    wait_for(lambda: set(row_ids(page)) == ids, timeout=5, what="filter cleared")
    assert no_match.is_hidden()
    app.context.close()
    page.close()


def test_a_filtered_list_takes_new_matches_by_itself(server: ServerProcess, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 560})
    page.goto(server.http + "/?q=fresh")
    page.evaluate("window.__noReload = 1")
    wait_for(lambda: page.evaluate("document.getElementById('list').dataset.query") == "?q=fresh",
             timeout=10, what="filtered list loaded")
    assert row_ids(page) == []
    # The search runs on the server: a pushed session that does not match must not show, one
    # that does must, on its own (the client cannot tell which is which).
    record_finished(server, "other-1", "https://shop.example/cart", CHROME_MAC)
    record_finished(server, "fresh-1", "https://app.example/fresh-start", FIREFOX_WIN)
    wait_for(lambda: row_ids(page) == ["fresh-1"], timeout=10, what="the new match, alone")
    assert page.locator('[data-testid="count"]').get_attribute("data-total") == "1"
    page.locator('[data-testid="filter"]').fill("")
    wait_for(lambda: set(row_ids(page)) == {"other-1", "fresh-1"}, timeout=10, what="both, unfiltered")
    assert page.evaluate("window.__noReload") == 1, "the list page was reloaded"
    page.close()


def test_offline_banner_and_recovery_after_restart(server: ServerProcess, browser: Browser,
                                                   app_server: AppServer) -> None:
    record_finished(server, "before-restart", "https://shop.example/", CHROME_MAC)
    page = open_list(browser, server)
    page.locator('[data-session-id="before-restart"]').wait_for(timeout=10_000)
    offline = page.locator('[data-testid="offline"]')
    assert offline.is_hidden()

    port = server.port
    assert server.stop() == 0
    offline.wait_for(state="visible", timeout=10_000)
    assert "unreachable" in offline.inner_text().lower()

    time.sleep(0.5)
    server.start(port=port)
    offline.wait_for(state="hidden", timeout=20_000)
    # Back online, the list reloads its page (slow on a restarted server of a loaded machine).
    wait_for(lambda: page.evaluate("!document.getElementById('list').hasAttribute('aria-busy')"),
             timeout=20, what="list reloaded")
    assert page.locator('[data-session-id="before-restart"]').is_visible()
    # The updates socket is really back: a session started now shows up by itself.
    app = recorded_page(browser, app_server, server.http, "after-restart", "<p>hi</p>")
    row = page.locator('[data-session-id="after-restart"]')
    row.wait_for(timeout=20_000)
    assert row.get_attribute("data-live") == "true"
    assert page.evaluate("window.__noReload") == 1, "the list page was reloaded"
    app.context.close()
    page.close()



def test_identify_shows_in_the_list_and_filters_it(server: ServerProcess, browser: Browser,
                                                   app_server: AppServer) -> None:
    people = {"who-pm": ("pm1@example.com", "{plan: 'pro', team: 'growth'}"),
              "who-dev": ("dev2", "{plan: 'free'}"), "who-anon": None}
    apps = []
    for sid, who in people.items():
        app = recorded_page(browser, app_server, server.http, sid, "<h1>App</h1>")
        if who:
            app.evaluate(f"StreamDOM.identify({who[0]!r}, {who[1]}); 0")
        apps.append(app)
    page = open_list(browser, server)
    for sid, who in people.items():
        row = page.locator(f'[data-session-id="{sid}"]')
        wait_for(lambda row=row, who=who: row.get_attribute("data-user-id") == (who[0] if who else ""),
                 timeout=20, what=f"{sid} identified in the list")
    pm = page.locator('[data-session-id="who-pm"]')
    assert "pm1@example.com" in pm.locator(".c-user").inner_text()
    assert "plan: pro" in (pm.locator(".c-user").get_attribute("title") or "")  # traits on hover
    pm.locator('[data-testid="traits-toggle"]').click()  # ... and expanded
    detail = pm.locator('[data-testid="row-detail"]')
    detail.wait_for()
    assert "plan" in detail.inner_text() and "growth" in detail.inner_text()

    detail.locator('[data-testid="only-user"]').click()  # every session of this user
    wait_for(lambda: row_ids(page) == ["who-pm"], timeout=10, what="filtered by user")
    assert "user=pm1%40example.com" in page.url
    page.locator('[data-testid="chip"]').click()  # remove the user filter
    wait_for(lambda: set(row_ids(page)) == set(people), timeout=10, what="unfiltered")

    page.locator('[data-testid="toggle-filters"]').click()
    trait = page.locator('[data-testid="filter-trait"]')
    trait.fill("plan:free")
    trait.press("Enter")
    wait_for(lambda: row_ids(page) == ["who-dev"], timeout=10, what="filtered by trait")
    assert "trait=plan%3Afree" in page.url
    page.locator('[data-testid="filter"]').fill("growth")  # q covers trait values too
    wait_for(lambda: row_ids(page) == [], timeout=10, what="both filters apply")
    page.locator('[data-testid="chip"]').click()
    wait_for(lambda: row_ids(page) == ["who-pm"], timeout=10, what="q alone")
    for app in apps:
        app.context.close()
    page.close()


def test_row_says_ended_within_a_second_of_the_tab_closing(tmp_path: Path, browser: Browser,
                                                           app_server: AppServer) -> None:
    # A grace period of a minute: only the recorder's goodbye can end the session in time.
    srv = ServerProcess(tmp_path / "data", *TEST_SERVER_ARGS, "--grace-seconds", "60").start()
    try:
        app = recorded_page(browser, app_server, srv.http, "bye-1", "<h1>Bye</h1>")
        page = open_list(browser, srv)
        row = page.locator('[data-session-id="bye-1"]')
        wait_for(lambda: row.get_attribute("data-live") == "true", timeout=20, what="live row")
        # When the row flips, on the page's clock (the same machine's as this test's).
        page.evaluate("""() => new MutationObserver((_, obs) => {
            const r = document.querySelector('[data-session-id="bye-1"]');
            if (r && r.dataset.live === 'false') { window.__endedAt = performance.timeOrigin + performance.now(); obs.disconnect(); }
          }).observe(document.getElementById('list'), {subtree: true, childList: true, attributes: true})""")
        closed_at = time.time() * 1000
        app.close()
        wait_for(lambda: page.evaluate("window.__endedAt") is not None, timeout=10,
                 what="row says ended (the grace period is a minute)")
        took = page.evaluate("window.__endedAt") - closed_at
        print(f"list row ended {took:.0f} ms after the recorded tab closed")
        assert row.get_attribute("data-live") == "false" and "ended" in row.inner_text()
        assert page.evaluate("window.__noReload") == 1
        app.context.close()
        page.close()
    finally:
        srv.stop()
