"""The PM viewer's player for finished sessions in headless Chromium: 404, ?t= deep link, replay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page

from streamdom.testing import ServerProcess
from tests.browser import AppServer, recorded_page, replayer_text
from tests.helpers import TEST_SERVER_ARGS, wait_for

SESSION = "ticker-3s"

# A page whose DOM changes every 100 ms: #counter counts ticks, #ms is Date.now() - t0 at the tick.
TICKER_PAGE = """
<style>
  body { font: 16px system-ui, sans-serif; margin: 0; background: #f8fafc; color: #0f172a; }
  header { background: #4f46e5; color: white; padding: 14px 24px; font-weight: 600; }
  main { padding: 24px; display: flex; gap: 16px; }
  .card { background: white; border: 1px solid #e2e8f0; border-radius: 10px; padding: 16px 20px; min-width: 160px; }
  .label { color: #64748b; font-size: 13px; } .value { font-size: 32px; font-weight: 700; }
</style>
<header>Orders dashboard</header>
<main>
  <div class="card"><div class="label">Ticks</div><div class="value" id="counter">0</div></div>
  <div class="card"><div class="label">Elapsed (ms)</div><div class="value" id="ms">0</div></div>
  <div class="card"><div class="label">Status</div><div class="value" id="state">running</div></div>
</main>
<script>
  window.t0 = Date.now(); let n = 0;
  window.tick = setInterval(() => {
    n++;
    document.getElementById('counter').textContent = String(n);
    document.getElementById('ms').textContent = String(Date.now() - window.t0);
  }, 100);
</script>
"""


@dataclass
class Recorded:
    server: ServerProcess
    t0: int  # the page's Date.now() when its ticker started (just before StreamDOM.init)
    first_ts: int  # timestamp of the session's first event (replay offsets count from it)
    final_counter: str
    final_ms: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, browser: Browser,
             app_server: AppServer) -> Iterator[Recorded]:
    """One server with a finished ~3 s ticker session, shared by this module's tests."""
    srv = ServerProcess(tmp_path_factory.mktemp("player") / "data", *TEST_SERVER_ARGS).start()
    try:  # a setup that fails midway must not leave its server running
        app = recorded_page(browser, app_server, srv.http, SESSION, TICKER_PAGE)
        t0 = app.evaluate("window.t0")
        time.sleep(3.0)
        final = app.evaluate("""() => { clearInterval(window.tick);
            document.getElementById('state').textContent = 'done';
            return [document.getElementById('counter').textContent, document.getElementById('ms').textContent]; }""")
        wait_for(lambda: '"done"' in json.dumps(srv.get_json(f"/api/sessions/{SESSION}/events")),
                 timeout=30, what="last mutation stored")
        app.context.close()
        wait_for(lambda: srv.get_json(f"/api/sessions/{SESSION}")["live"] is False, timeout=30,
                 what="session ended")
        first_ts = srv.get_json(f"/api/sessions/{SESSION}/events?limit=1")[0]["timestamp"]
        yield Recorded(srv, t0, first_ts, final[0], final[1])
    finally:
        srv.stop()


def int_text(page: Page, selector: str) -> int | None:
    """Integer text of an element in the replayer iframe (None if absent)."""
    t = replayer_text(page, selector)
    return int(t) if t is not None and t.strip().isdigit() else None


def test_unknown_session_is_404_with_message(recorded: Recorded, browser: Browser) -> None:
    page = browser.new_page()
    resp = page.goto(recorded.server.http + "/sessions/nope")
    assert resp is not None and resp.status == 404
    nf = page.locator('[data-testid="not-found"]')
    nf.wait_for(state="visible", timeout=30_000)
    assert "nope" in nf.inner_text()
    assert page.locator(".replayer-wrapper").count() == 0
    page.close()


def at_offset(browser: Browser, recorded: Recorded, t: int) -> tuple[int, int]:
    """Open the replay deep-linked at ?t=<t>; return the (#ms, #counter) it settles on."""
    page = browser.new_page()
    page.goto(f"{recorded.server.http}/sessions/{SESSION}?t={t}")
    page.locator(".replayer-wrapper iframe").wait_for(timeout=30_000)
    # The player opens paused at the first frame, then seeks once the events are in.
    wait_for(lambda: (page.evaluate("window.__streamdom.currentTime()") or 0) > 0
             and (int_text(page, "#ms") or 0) > 0, timeout=30, what=f"seek to {t}")
    first = (int_text(page, "#ms"), int_text(page, "#counter"))
    time.sleep(0.6)  # paused: the frame must not move on
    second = (int_text(page, "#ms"), int_text(page, "#counter"))
    assert first == second, f"deep link should open paused, saw {first} then {second}"
    assert abs(page.evaluate("window.__streamdom.currentTime()") - t) <= 50
    page.close()
    assert first[0] is not None and first[1] is not None
    return first[0], first[1]


SEEK_SLACK = 50  # ms the player may land from ?t= (at_offset checks its currentTime with it)


def recorded_ticks(events: list[dict]) -> dict[int, tuple[int, int]]:
    """#ms value -> (timestamp, #counter value) of every tick stored: a mutation event that
    added the two new text nodes (the counter, under 100; the ms, 100 and more)."""
    ticks = {}
    for ev in events:
        if ev["type"] != 3 or ev["data"].get("source") != 0:
            continue
        numbers = sorted(int(add["node"]["textContent"]) for add in ev["data"].get("adds", [])
                         if add["node"].get("type") == 3 and add["node"].get("textContent", "").isdigit())
        if len(numbers) == 2:
            ticks[numbers[1]] = (ev["timestamp"], numbers[0])
    return ticks


def test_deep_link_opens_at_the_given_moment(recorded: Recorded, browser: Browser) -> None:
    shift = recorded.first_ts - recorded.t0  # the ticker started just before recording did
    assert 0 <= shift < 1000
    # Checked against the ticks as stored, not against a tick every 100 ms: a busy machine's
    # timer fires late, and then early to keep its schedule.
    ticks = recorded_ticks(recorded.server.get_json(f"/api/sessions/{SESSION}/events"))
    assert len(ticks) >= 20
    shown = []
    for t in (1500, 2500):
        ms, counter = at_offset(browser, recorded, t)
        assert ms in ticks, f"?t={t}: the page showed {ms} ms, which no stored tick set"
        ts, stored_counter = ticks[ms]
        assert counter == stored_counter, f"?t={t}: #counter {counter} is not its tick's ({stored_counter})"
        moment = recorded.first_ts + t
        assert ts <= moment + SEEK_SLACK, f"?t={t}: showed a tick stored {ts - moment} ms after t"
        skipped = sorted(at - moment for at, _ in ticks.values() if ts < at <= moment - SEEK_SLACK)
        assert not skipped, f"?t={t}: later ticks stored before t were not shown (at {skipped} ms)"
        shown.append(ms)
    assert shown[1] > shown[0]


def test_replay_plays_to_the_final_dom(recorded: Recorded, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{recorded.server.http}/sessions/{SESSION}")
    page.locator(".replayer-wrapper iframe").wait_for(timeout=30_000)
    wait_for(lambda: int_text(page, "#ms") is not None, timeout=30, what="first frame")
    start = int_text(page, "#ms")
    assert start is not None and start < int(recorded.final_ms) - 1000, "replay should start at the beginning"

    # Mid-way through: the player is really playing.
    wait_for(lambda: (int_text(page, "#ms") or 0) > 1200, timeout=30, what="playback advancing")
    assert replayer_text(page, "#state") == "running"

    wait_for(lambda: replayer_text(page, "#state") == "done", timeout=30, what="final DOM")
    assert replayer_text(page, "#counter") == recorded.final_counter
    assert replayer_text(page, "#ms") == recorded.final_ms
    page.close()
