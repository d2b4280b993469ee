"""Error pages of the viewer: styled like the viewer with a way back to the list, in headless
Chromium against a real server; errors of /api/* stay JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from playwright.sync_api import Browser, Page

from streamdom.testing import InProcessServer
from tests.helpers import record, server_config, session_events


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """One server for the module: these tests only read."""
    srv = InProcessServer(server_config(tmp_path_factory.mktemp("errors") / "data")).start()
    yield srv
    srv.stop()


def styled(page: Page) -> None:
    """The page wears the viewer's look: its stylesheet loaded, the top bar, a card."""
    assert page.locator(".topbar .brand").inner_text() == "StreamDOM"
    box = page.locator(".error-box")
    assert box.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"
    assert "system-ui" in page.evaluate("getComputedStyle(document.body).fontFamily")


@pytest.mark.parametrize(("path", "status", "title", "says"), [
    ("/sessions/a/b", 404, "Page not found", "/sessions/a/b"),
    ("/sessions/nope", 404, "Session not found", "nope"),
    ("/sessions/bad%20id", 400, "Not a session id", "bad id"),
    ("/sessions/%C3%28", 400, "Bad request", "not valid"),   # not UTF-8 once decoded
    ("/no/such/page", 404, "Page not found", "/no/such/page"),
    ("/static/missing.js", 404, "Page not found", "no such file"),
])
def test_error_pages_are_styled_with_a_link_back(app: InProcessServer, browser: Browser, path: str,
                                                 status: int, title: str, says: str) -> None:
    page = browser.new_page()
    resp = page.goto(app.http + path)
    assert resp is not None and resp.status == status
    assert resp.headers["content-type"].startswith("text/html")
    assert page.locator("h1").inner_text() == title
    assert says.lower() in page.locator(".error-box").inner_text().lower()
    assert page.locator('[data-testid="error-page"]').get_attribute("data-status") == str(status)
    styled(page)
    page.locator('[data-testid="back-to-list"]').click()
    page.wait_for_url(app.http + "/")
    page.locator('[data-testid="filter"]').wait_for()
    page.close()


def test_request_text_is_escaped_on_error_pages(app: InProcessServer, browser: Browser) -> None:
    page = browser.new_page()
    resp = page.goto(app.http + "/sessions/%3Cimg%20src%3Dx%20onerror%3Dwindow.pwned%3D1%3E")
    assert resp is not None and resp.status == 400
    assert page.locator(".error-box img").count() == 0
    assert "<img src=x" in page.locator(".error-box").inner_text()
    assert page.evaluate("window.pwned") is None
    page.close()


def test_a_known_session_still_gets_the_player(app: InProcessServer) -> None:
    record(app.ws, "known-1", session_events(3))
    with urlopen(app.http + "/sessions/known-1") as resp:
        assert resp.status == 200
        assert 'src="/static/player.js"' in resp.read().decode()


@pytest.mark.parametrize(("path", "status"), [
    ("/api/sessions/nope", 404),
    ("/api/sessions/nope/events", 404),
    ("/api/no-such-endpoint", 404),
    ("/api/sessions?limit=x", 400),
])
def test_api_errors_stay_json(app: InProcessServer, path: str, status: int) -> None:
    with pytest.raises(HTTPError) as err:
        urlopen(app.http + path)
    assert err.value.code == status
    assert err.value.headers["Content-Type"].startswith("application/json")
    body = json.loads(err.value.read())
    assert body["status"] == status and body["error"]
