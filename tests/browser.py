"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, and an app to record."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("STREAMDOM_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class AppServer:
    """A customer's web app on its own loopback origin (another origin than StreamDOM, like real
    life; a real socket, because Chromium only lets loopback pages call loopback servers)."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.referers: dict[str, str | None] = {}  # path -> Referer of its latest request
        pages, referers = self.pages, self.referers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                referers[self.path] = self.headers.get("Referer")
                ctype, body = pages.get(self.path.split("?")[0], ("text/plain", b"not found"))
                self.send_response(200 if self.path.split("?")[0] in pages else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, path: str, body: str, ctype: str = "text/html; charset=utf-8") -> str:
        """Serve `body` at `path`; return its URL."""
        self.pages[path] = (ctype, body.encode())
        return self.origin + path


@pytest.fixture(scope="session")
def app_server() -> Iterator[AppServer]:
    """The app whose pages get recorded."""
    srv = AppServer()
    yield srv
    srv.httpd.shutdown()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the test session."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def _close_what_the_test_opened(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the browser contexts (and so pages) a test left open, failed or not: a recorded
    page left ticking, or a viewer still live, would go on costing CPU (and reconnecting to a
    stopped server) through every later test of the worker. Contexts of module fixtures,
    opened before the test, stay."""
    if "browser" not in request.fixturenames:
        yield
        return
    b: Browser = request.getfixturevalue("browser")
    before = set(b.contexts)
    yield
    for context in b.contexts:
        if context not in before:
            context.close()


def app_html(server_http: str, session_id: str, body: str, options: str = "") -> str:
    """A page that loads /streamdom.js from the StreamDOM server and records itself."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>app</title>
<script src="{server_http}/streamdom.js"></script></head><body>{body}
<script>StreamDOM.init({{sessionId: {session_id!r}{options}}});</script></body></html>"""


def recorded_page(browser: Browser, app: AppServer, server_http: str, session_id: str, body: str,
                  init_script: str | None = None, options: str = "", path: str | None = None) -> Page:
    """Open a new recorded page of the app (in its own browser context)."""
    path = path or f"/{session_id}.html"
    url = app.add(path, app_html(server_http, session_id, body, options))
    context = browser.new_context()
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.goto(url)
    return page


def replayer_text(page: Page, selector: str) -> str | None:
    """Text of an element inside the viewer's rrweb replayer iframe (None if not there yet)."""
    return page.evaluate(
        """(sel) => { const f = document.querySelector('.replayer-wrapper iframe');
             const d = f && f.contentDocument; const el = d && d.querySelector(sel);
             return el ? el.textContent : null; }""", selector)
