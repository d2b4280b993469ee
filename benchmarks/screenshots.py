"""Record a few demo sessions in headless Chromium, then screenshot the viewer: docs/screenshots.

A StreamDOM server runs in a subprocess on a fresh data dir; a small shop app on a loopback page
server records itself with the server's /streamdom.js. Each session is a real browser context:
users identify themselves, click (a rage click, a dead click), throw an error, fail a request,
open a second tab; one stays open (LIVE). Then the list (1280 px and 390 px wide) and the player
are captured (live, and a finished session's replay), so the README's pictures can be made again after any change to the viewer:

    .venv/bin/python benchmarks/screenshots.py [--out docs/screenshots] [--only list|player]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support import CHROMIUM, CHROMIUM_ARGS, ROOT, PageServer, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPLAYED = "pricing-d04e"  # ends with a failed request and an error: the replay screenshot
HOST = "shop.acme.test"  # mapped to 127.0.0.1 by Chromium's host resolver rules
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")

SHOP = """<!doctype html><html><head><meta charset="utf-8"><title>Acme shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
header{background:#1f2937;color:#fff;padding:12px 20px;font-weight:600}
main{padding:20px;max-width:720px}.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px;margin-bottom:12px}
button{font:inherit;padding:6px 12px;border-radius:6px;border:1px solid #d1d5db;background:#fff;cursor:pointer}
.primary{background:#2563eb;color:#fff;border-color:#2563eb}#cart{color:#555}</style>
<script src="{server}/streamdom.js"></script></head><body>
<header>Acme shop · {title}</header><main>
<div class="card"><b>Trail running shoes</b> · 129 €<br><br>
<button id="add" class="primary">Add to cart</button> <button id="coupon">Apply coupon</button></div>
<div class="card" id="cart">Cart: 0 items</div>
<div class="card"><label>Email <input id="email" type="email" placeholder="you@example.com"></label>
<button id="pay">Pay now</button></div></main>
<script>
StreamDOM.init({sessionId: window.__demoSession});
let n = 0;
document.getElementById('add').onclick = () => {
  n++; document.getElementById('cart').textContent = 'Cart: ' + n + ' item' + (n > 1 ? 's' : '');
};
document.getElementById('pay').onclick = async () => {
  await fetch('/api/payments', {method: 'POST'}).catch(() => {});
  setTimeout(() => { throw new TypeError("Cannot read properties of undefined (reading 'total')"); });
};
</script></body></html>"""


def wait_for(pred: Any, timeout: float = 30, what: str = "condition") -> None:
    """Poll `pred` until true (the viewer's CSP forbids eval, so no page.wait_for_function there)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def shop_url(app: PageServer, path: str) -> str:
    """The shop's address under its demo host name (Chromium maps it to the loopback server)."""
    return f"http://{HOST}:{app.port}/{path}"


def recorded(browser: Browser, app: PageServer, session: str, title: str, agent: str | None = None,
             viewport: tuple[int, int] = (1024, 700)) -> Page:
    """A page of the shop, recording itself as `session`, in a browser context of its own."""
    ctx = browser.new_context(user_agent=agent, viewport={"width": viewport[0], "height": viewport[1]})
    ctx.add_init_script(f"window.__demoSession = {json.dumps(session)}")
    page = ctx.new_page()
    page.goto(shop_url(app, title.lower()))
    page.wait_for_function("window.StreamDOM && StreamDOM.status && StreamDOM.status().ackedSeq >= 2")
    return page


def act(browser: Browser, app: PageServer) -> tuple[list[Page], str]:
    """Play the demo sessions; return the pages left open and the session to show in the player."""
    live = recorded(browser, app, "checkout-7f3a", "Checkout")
    live.evaluate("StreamDOM.identify('maria@acme.io', {plan: 'pro', company: 'Acme', seats: 12}); 0")
    live.evaluate("StreamDOM.setMetadata({release: '2026.11.26', experiment: 'one-page-checkout'}); 0")
    for _ in range(2):
        live.click("#add")
        live.wait_for_timeout(400)
    for _ in range(4):  # a rage click on a button that does nothing: dead too
        live.click("#coupon", delay=20)
    live.wait_for_timeout(1200)
    live.fill("#email", "maria@acme.io")
    live.click("#pay")
    live.wait_for_timeout(600)

    signup = recorded(browser, app, "signup-19bc", "Signup", FIREFOX)
    signup.evaluate("StreamDOM.identify('jo@example.com', {plan: 'free'}); 0")
    second = signup.context.new_page()  # a second tab of the same session
    second.goto(shop_url(app, "pricing"))
    second.click("#add")
    signup.click("#add")
    signup.wait_for_timeout(300)

    blog = recorded(browser, app, REPLAYED, "Pricing", SAFARI, (390, 700))
    blog.click("#add")
    blog.wait_for_timeout(1500)
    for _ in range(4):  # spread out: the replay's markers stand apart on its timeline
        blog.click("#coupon", delay=20)
    blog.wait_for_timeout(1500)
    blog.click("#pay")
    blog.wait_for_timeout(600)

    ended = [signup, blog]
    for i, title in enumerate(("Cart", "Account", "Search")):
        p = recorded(browser, app, f"{title.lower()}-{40 + i:02x}a1", title, (None, FIREFOX, SAFARI)[i])
        p.click("#add")
        ended.append(p)
    for i, p in enumerate(ended):
        p.mouse.move(200 + 40 * i, 300, steps=8)
        p.wait_for_timeout(700 + 300 * i)
        p.click("#add")
        p.context.close()
    return [live], "checkout-7f3a"


def main() -> None:
    """Record, then capture the list and the player."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--only", choices=("list", "player"), help="capture only this page")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", "--grace-seconds", "1").start()
        pages = {f"/{t}": SHOP.replace("{server}", server.http).replace("{title}", t.capitalize())
                 for t in ("checkout", "signup", "pricing", "cart", "account", "search")}
        app = PageServer(pages)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                    *CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"])
                _open, featured = act(browser, app)
                wait_for(lambda: sum(not s["live"] for s in server.get_json("/api/sessions")["sessions"]) >= 5,
                         what="the closed sessions end")
                shots = capture(browser, server, featured, args.only, args.out)
                browser.close()
        finally:
            app.close()
            server.stop()
    print(json.dumps({"screenshots": [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                                      for p in shots]}, indent=1))


def capture(browser: Browser, server: ServerProcess, featured: str, only: str | None,
            out: Path) -> list[Path]:
    """Screenshots of the list (wide and 390 px) and of the player."""
    shots = []
    if only in (None, "list"):
        for name, width, height in (("list.png", 1280, 640), ("list-390.png", 390, 844)):
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.goto(server.http + "/")
            wait_for(lambda p=page: p.evaluate("document.querySelectorAll('#list [data-session-id]').length >= 6"
                                           " && !document.getElementById('list').hasAttribute('aria-busy')"),
                     what="the list")
            if width > 800:  # one row open: traits and metadata
                page.locator(f'[data-session-id="{featured}"] [data-testid="traits-toggle"]').click()
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / name))
            shots.append(out / name)
            page.close()
    if only in (None, "player"):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{server.http}/sessions/{featured}")
        page.locator(".replayer-wrapper iframe").wait_for(timeout=30_000)
        # The event list filled and the tab bar up: the player has caught up with the session.
        wait_for(lambda: page.evaluate("document.querySelectorAll('[data-testid=event]').length >= 8"
                                       " && !!document.querySelector('[data-testid=tab]')"), what="the player")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "player.png"))
        shots.append(out / "player.png")
        page.close()
        # A finished session at its end: the timeline's markers (failed request, error) and the list.
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(f"{server.http}/sessions/{REPLAYED}?t=99999999")
        wait_for(lambda: page.evaluate("document.querySelectorAll('[data-testid=marker]').length >= 2"),
                 what="the replay's markers")
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "player-markers.png"))
        shots.append(out / "player-markers.png")
        page.close()
    return shots


if __name__ == "__main__":
    main()
