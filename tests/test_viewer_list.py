"""The PM viewer's session list in headless Chromium, against a real server and real recorders."""

from __future__ import annotations

import time

from playwright.sync_api import Browser, Page
from tornado.websocket import websocket_connect

from streamdom.testing import ServerProcess
from tests.browser import AppServer, recorded_page, screenshot_dir
from tests.helpers import Recorder, run_async, session_events, wait_for

SCREENSHOTS = screenshot_dir()
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
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-live") == "true"
    assert page.locator('[data-testid="empty"]').is_hidden()
    assert "/list-live-1.html" in row.inner_text()  # the page URL from the recorder's hello

    app.context.close()  # the recorder leaves; the server's grace period is 0.5 s
    wait_for(lambda: row.get_attribute("data-live") == "false", timeout=10, what="row flips to ended")
    assert page.evaluate("window.__noReload") == 1, "the list page was reloaded"
    page.close()


def test_filter_by_id_and_url_and_screenshot(server: ServerProcess, browser: Browser,
                                             app_server: AppServer) -> None:
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
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "list.png"))
    assert (SCREENSHOTS / "list.png").stat().st_size > 5_000

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
    assert page.locator('[data-session-id="before-restart"]').is_visible()
    # The updates socket is really back: a session started now shows up by itself.
    app = recorded_page(browser, app_server, server.http, "after-restart", "<p>hi</p>")
    row = page.locator('[data-session-id="after-restart"]')
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-live") == "true"
    assert page.evaluate("window.__noReload") == 1, "the list page was reloaded"
    app.context.close()
    page.close()

