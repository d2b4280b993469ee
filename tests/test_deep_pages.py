"""Every page rrweb can record, StreamDOM keeps: deep DOMs, big snapshots, one bad event.

The server used to parse whole frames with the C decoder, whose recursion limit (about 1,000
levels) refused the full snapshot of a page 600 elements deep (rrweb nests two levels per
element), and the recorder then stopped for good: nothing of the session was kept.
"""

from __future__ import annotations

import sys

from playwright.sync_api import Browser, Page

from streamdom.testing import ServerProcess
from tests.browser import AppServer, recorded_page, replayer_text
from tests.helpers import wait_for

DEEP = """<div id="root"></div><script>
let el = document.getElementById('root');
for (let i = 0; i < %(depth)d; i++) { const d = document.createElement('div'); el.appendChild(d); el = d; }
el.id = 'deepest'; el.textContent = 'bottom';
window.deepen = (text) => { document.getElementById('deepest').textContent = text; };
</script>"""

WIDE = """<table id="t"></table><script>
const t = document.getElementById('t');
for (let r = 0; r < %(rows)d; r++) {
  const tr = t.insertRow();
  for (let c = 0; c < 4; c++) tr.insertCell().textContent = r + ':' + c;
}
t.rows[t.rows.length - 1].id = 'last';
</script>"""


def status(page: Page) -> dict:
    return page.evaluate("StreamDOM.status()")


def replays(browser: Browser, server: ServerProcess, session_id: str, selector: str, text: str) -> bool:
    """Open the finished session in the player; whether `selector` shows `text` as it plays."""
    page = browser.new_page()
    try:
        page.goto(f"{server.http}/sessions/{session_id}")
        page.wait_for_selector(".replayer-wrapper iframe", state="attached", timeout=20000)
        return wait_for(lambda: replayer_text(page, selector) == text, timeout=20,
                        what=f"{selector} replayed as {text!r}")
    finally:
        page.close()


def finish(page: Page, server: ServerProcess, session_id: str) -> list[dict]:
    page.evaluate("StreamDOM.stop()")
    wait_for(lambda: not server.get_json(f"/api/sessions/{session_id}")["live"], what="ended")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # our own json.loads of the deep snapshot, not the server's
    try:
        return server.get_json(f"/api/sessions/{session_id}/events")
    finally:
        sys.setrecursionlimit(limit)


def test_a_page_1000_elements_deep_is_kept_and_replayed(server: ServerProcess, browser: Browser,
                                                        app_server: AppServer) -> None:
    page = recorded_page(browser, app_server, server.http, "deep", DEEP % {"depth": 1000})
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="the deep snapshot acknowledged")
    page.evaluate("deepen('changed at the bottom')")  # an incremental event just as deep
    wait_for(lambda: status(page)["ackedSeq"] == status(page)["lastSeq"], what="all acked")
    events = finish(page, server, "deep")
    assert [e["type"] for e in events if e["type"] in (2, 4)][:2] == [4, 2]
    page.context.close()
    assert replays(browser, server, "deep", "#deepest", "changed at the bottom")


def test_a_10000_node_snapshot_is_kept_and_replayed(server: ServerProcess, browser: Browser,
                                                   app_server: AppServer) -> None:
    page = recorded_page(browser, app_server, server.http, "wide", WIDE % {"rows": 2000})
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="the big snapshot acknowledged")
    events = finish(page, server, "wide")
    snapshot = next(e for e in events if e["type"] == 2)
    count, todo = 0, [snapshot["data"]["node"]]
    while todo:
        node = todo.pop()
        count += 1
        todo.extend(node.get("childNodes", []))
    assert count > 10_000
    page.context.close()
    assert replays(browser, server, "wide", "#last td", "1999:0")


# Turns the first frame that carries the text POISON into one holding NaN, as a buggy or
# hostile page script could: the server must refuse that event, the recorder must go on.
POISON = """
const send = WebSocket.prototype.send;
let poisoned = false;
WebSocket.prototype.send = function (d) {
  if (!poisoned && typeof d === 'string' && d.includes('"POISON"')) {
    poisoned = true;
    d = d.replace('"POISON"', 'NaN');
  }
  return send.call(this, d);
};
"""


def test_one_refused_event_does_not_stop_the_recorder(server: ServerProcess, browser: Browser,
                                                      app_server: AppServer) -> None:
    page = recorded_page(browser, app_server, server.http, "poisoned", '<p id="p">start</p>',
                         init_script=POISON)
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="snapshot")
    page.evaluate("document.getElementById('p').textContent = 'POISON'")
    wait_for(lambda: status(page)["connected"] is False or status(page)["ackedSeq"] > 2, what="refusal")
    page.evaluate("document.getElementById('p').textContent = 'after'")
    wait_for(lambda: status(page)["connected"] and status(page)["ackedSeq"] == status(page)["lastSeq"],
             timeout=20, what="the recorder back and everything acknowledged")
    events = finish(page, server, "poisoned")
    # The refused change is not stored. A full snapshot taken after the reconnect may show the
    # page's text "POISON" legitimately, if it ran before the next change.
    changes = [str(e["data"]) for e in events if e["type"] == 3]
    assert not any("POISON" in t for t in changes)
    assert any("after" in str(e["data"]) for e in events), "events after the refused one are kept"
    gaps = [e for e in events if e["type"] == 5 and e["data"]["tag"] == "streamdom-gap"]
    assert len(gaps) == 1 and gaps[0]["data"]["payload"]["count"] == 1
    page.context.close()
