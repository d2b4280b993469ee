"""Live view in headless Chromium: the clock-corrected "N ms delayed" is true even when the
recorder's or the viewer's clock is minutes off, live playback does not stall on skewed clocks,
and rewinding then going live again works while the recorded page keeps changing."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, Page

from streamdom.testing import ServerProcess
from tests.browser import AppServer, recorded_page, replayer_text
from tests.helpers import wait_for

# Shifts this page's wall clock (Date.now, new Date(), Date()) by OFFSET ms; performance.now and
# performance.timeOrigin (what the test uses as the one true clock) are left alone.
SHIFT_CLOCK = """(() => {
  const o = %d, RealDate = Date, dn = RealDate.now.bind(RealDate);
  RealDate.now = () => dn() + o;
  window.Date = new Proxy(RealDate, {
    construct(t, args, nt) { return Reflect.construct(t, args.length ? args : [dn() + o], nt); },
    apply() { return new RealDate(dn() + o).toString(); },
  });
})();"""

TRUE_NOW = "performance.timeOrigin + performance.now()"

TICKER = """<h1>Live</h1><div id="v">0</div><div id="counter">0</div>
<script>let n = 0; window.tick = setInterval(() => {
  document.getElementById('counter').textContent = String(++n); }, 100);</script>"""


def watch(browser: Browser, server: ServerProcess, session_id: str, init_script: str | None = None) -> Page:
    """A viewer page on /sessions/<id> (in its own context, optionally with a shifted clock)."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 700})
    if init_script:
        ctx.add_init_script(init_script)
    page = ctx.new_page()
    page.goto(f"{server.http}/sessions/{session_id}")
    return page


def wait_live(server: ServerProcess, session_id: str) -> None:
    wait_for(lambda: any(s["id"] == session_id and s["live"]
                         for s in server.get_json("/api/sessions")["sessions"]), what="live session")


def int_text(page: Page, selector: str) -> int | None:
    t = replayer_text(page, selector)
    return int(t) if t is not None and t.strip().isdigit() else None


@pytest.mark.parametrize("who,offset", [("recorder", 600_000), ("viewer", -300_000)])
def test_delay_is_clock_corrected(server: ServerProcess, browser: Browser, app_server: AppServer,
                                  who: str, offset: int) -> None:
    sid = f"skew-{who}"
    shift = SHIFT_CLOCK % offset
    app = recorded_page(browser, app_server, server.http, sid, '<h1>Skewed</h1><div id="v">0</div>',
                        init_script=shift if who == "recorder" else None)
    skewed = app if who == "recorder" else None
    wait_live(server, sid)
    viewer = watch(browser, server, sid, init_script=shift if who == "viewer" else None)
    if who == "viewer":
        skewed = viewer
    assert skewed is not None
    # The shift is really in effect on the skewed side.
    assert abs(skewed.evaluate(f"Date.now() - ({TRUE_NOW})") - offset) < 50
    assert abs(skewed.evaluate(f"new Date().getTime() - ({TRUE_NOW})") - offset) < 50

    wait_for(lambda: replayer_text(viewer, "#v") == "0", timeout=15, what="snapshot in viewer")
    hook = "window.__streamdom"
    wait_for(lambda: viewer.evaluate(f"{hook}.viewerOffset !== null && {hook}.recorderOffset !== null"),
             timeout=10, what="both clock offsets known")
    time.sleep(0.3)  # let both ping bursts finish
    # The offsets the viewer works with reflect the skew (server clock is the true one).
    if who == "recorder":
        assert abs(viewer.evaluate(f"{hook}.recorderOffset") + offset) < 200
    else:
        assert abs(viewer.evaluate(f"{hook}.viewerOffset") + offset) < 200

    latency = viewer.locator('[data-testid="latency"]')
    for i in range(1, 4):
        value = f"change-{i}"
        viewer.evaluate("""(val) => {
            window.__seen = null;
            const doc = document.querySelector('.replayer-wrapper iframe').contentDocument;
            const obs = new MutationObserver(() => {
              const el = doc.querySelector('#v');
              if (el && el.textContent === val) {
                // The label is written in the frame that paints the change (not in the
                // message handler): read it there.
                const at = performance.timeOrigin + performance.now(), raw = window.__streamdom.lastDelayMs;
                requestAnimationFrame(() => {
                  window.__seen = { at, raw, text: document.querySelector('[data-testid="latency"]').textContent };
                });
                obs.disconnect();
              }
            });
            obs.observe(doc, { subtree: true, childList: true, characterData: true });
        }""", value)
        changed_at = app.evaluate(f"""(val) => {{ document.getElementById('v').textContent = val;
                                      return {TRUE_NOW}; }}""", value)
        # Applied at once, not held back by a recorder clock minutes ahead or behind.
        seen = wait_for(lambda: viewer.evaluate("window.__seen"), timeout=5, what=f"{value} in viewer")
        true_delay = seen["at"] - changed_at
        m = re.search(r"(\d+) ms delayed", seen["text"])
        assert m, f"latency text {seen['text']!r}"
        shown = int(m.group(1))
        assert 0 <= true_delay < 1000
        assert shown < 1000, f"shown {shown} ms, true {true_delay:.0f} ms"
        assert abs(shown - true_delay) < 300, f"shown {shown} ms, true {true_delay:.0f} ms"
        assert abs(seen["raw"] - true_delay) < 300, f"raw {seen['raw']} ms, true {true_delay:.0f} ms"
        # The frame that paints the change shows its own delay, not the previous event's.
        assert abs(shown - max(0, round(seen["raw"]))) <= 1, f"shown {shown} ms, applied {seen['raw']} ms"
        time.sleep(0.2)
    assert latency.is_visible() and re.search(r"\d+ ms delayed", latency.inner_text())
    viewer.context.close()
    app.context.close()


def test_rewind_then_go_live(server: ServerProcess, browser: Browser, app_server: AppServer) -> None:
    sid = "rewind-live"
    app = recorded_page(browser, app_server, server.http, sid, TICKER)
    wait_live(server, sid)
    viewer = watch(browser, server, sid)
    badge = viewer.locator('[data-testid="live-badge"]')
    go_live = viewer.locator('[data-testid="go-live"]')
    badge.wait_for(state="visible", timeout=15_000)
    assert go_live.is_hidden()
    wait_for(lambda: (int_text(viewer, "#counter") or 0) >= 40, timeout=15, what="4 s of live ticks")

    # Drag the timeline back near the start (the way a slider drag ends: input, then change).
    viewer.evaluate("""() => { const tl = document.querySelector('[data-testid="timeline"]');
        tl.value = '200'; tl.dispatchEvent(new Event('input', { bubbles: true }));
        tl.dispatchEvent(new Event('change', { bubbles: true })); }""")
    go_live.wait_for(state="visible", timeout=10_000)
    assert viewer.evaluate("window.__streamdom.mode") == "rewind"
    assert badge.is_hidden()

    def rewound() -> bool:
        shown = int_text(viewer, "#counter")
        live = int(app.evaluate("document.getElementById('counter').textContent"))
        # Playing on from 0.2 s at 1x keeps it ~4 s (~40 ticks) behind the page.
        return shown is not None and shown <= live - 25

    wait_for(rewound, timeout=10, what="an early counter value in the rewound view")
    time.sleep(1.0)  # the page keeps ticking meanwhile
    assert rewound(), "the rewound view jumped back to live by itself"

    at_click = int(app.evaluate("document.getElementById('counter').textContent"))
    go_live.click()
    wait_for(lambda: (int_text(viewer, "#counter") or 0) >= at_click, timeout=10,
             what="current counter after go-live")
    badge.wait_for(state="visible", timeout=5_000)
    assert go_live.is_hidden()
    assert viewer.evaluate("window.__streamdom.mode") == "live"
    # And it keeps following the page.
    later = int(app.evaluate("document.getElementById('counter').textContent")) + 5
    wait_for(lambda: (int_text(viewer, "#counter") or 0) >= later, timeout=5, what="live ticks after go-live")
    viewer.context.close()
    app.context.close()
