"""What PMs come for, recorded by the real recorder in headless Chromium against a real server:
who the user is, what went wrong (errors, console, requests), rage and dead clicks, strict
privacy down to the archive's files, and the goodbye that ends a session when its tab closes."""

from __future__ import annotations

import time

from playwright.sync_api import Browser, Page

from streamdom.archive import lake
from streamdom.testing import ServerProcess
from tests.browser import AppServer, recorded_page
from tests.helpers import TEST_SERVER_ARGS, wait_for


def status(page: Page) -> dict:
    """The recorder's status in the page."""
    return page.evaluate("StreamDOM.status()")


def recorded_all(page: Page) -> None:
    """Wait until the server acknowledged everything the page recorded so far."""
    wait_for(lambda: (s := status(page))["connected"] and s["ackedSeq"] == s["lastSeq"],
             what="everything acknowledged")


def summary(server: ServerProcess, session_id: str) -> dict:
    """GET /api/sessions/<id>."""
    return server.get_json(f"/api/sessions/{session_id}")


def ids(server: ServerProcess, query: str) -> list[str]:
    """Ids listed by /api/sessions?<query>."""
    return [s["id"] for s in server.get_json("/api/sessions?" + query)["sessions"]]


APP = """<button id="save">Save draft</button><div id="out"></div>
<script>
document.getElementById('save').onclick = () => { document.getElementById('out').textContent = 'saved ' + Date.now(); };
</script>"""


def test_identify_errors_console_and_network_reach_the_list(server: ServerProcess, browser: Browser,
                                                             app_server: AppServer) -> None:
    api = app_server.add("/api/ok.json", '{"ok": true}', "application/json")
    page = recorded_page(browser, app_server, server.http, "pm-who", APP)
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="snapshot")
    page.evaluate("""async (api) => {
        StreamDOM.identify('pm1@example.com', {plan: 'pro', team: 'growth'});
        StreamDOM.setMetadata({build: '2026.11.26'});
        console.error('could not save', {code: 7});
        console.warn('slow');
        setTimeout(() => { throw new Error('thrown on purpose'); });
        Promise.reject(new Error('rejected on purpose'));
        await fetch(api + '?token=secret');
        await fetch('/missing?q=1').catch(() => {});
        await fetch('http://127.0.0.1:1/refused').catch(() => {});
        await new Promise((res) => { const x = new XMLHttpRequest(); x.open('POST', '/missing-too');
                                     x.onloadend = res; x.send('body'); });
        await new Promise((res) => setTimeout(res, 50));
    }""", api)
    page.click("#save")
    recorded_all(page)
    s = summary(server, "pm-who")
    assert s["user_id"] == "pm1@example.com" and s["traits"] == {"plan": "pro", "team": "growth"}
    assert s["metadata"] == {"build": "2026.11.26"}
    # thrown + rejected + console.error; console.warn; /missing (404), refused (0), POST /missing-too (501)
    assert (s["errors"], s["warnings"], s["network_errors"]) == (3, 1, 3), s
    assert s["browser"].startswith("Chrome ") and s["os"] == "Linux"
    assert ids(server, "user=pm1@example.com") == ["pm-who"]
    assert ids(server, "trait=plan:pro") == ["pm-who"]
    assert ids(server, "q=growth") == ["pm-who"]
    assert ids(server, "q=chrome") == ["pm-who"]  # the Browser column is searchable
    assert ids(server, "clicked=save+draft") == ["pm-who"]
    assert ids(server, "has_errors=1") == ["pm-who"]
    events = server.get_json("/api/sessions/pm-who/events")
    custom = [e["data"] for e in events if e["type"] == 5]
    network = [c["payload"] for c in custom if c["tag"] == "streamdom-network"]
    assert {(n["method"], n["status"], n["initiator"]) for n in network} >= {
        ("GET", 200, "fetch"), ("GET", 404, "fetch"), ("GET", 0, "fetch"), ("POST", 501, "xhr")}
    assert all("?" not in n["url"] and "secret" not in n["url"] for n in network)  # no query by default
    assert all(isinstance(n["duration"], int) and n["duration"] >= 0 for n in network)
    errors = [c["payload"] for c in custom if c["tag"] == "streamdom-error"]
    assert {e["source"] for e in errors} == {"error", "rejection"}
    assert any("thrown on purpose" in e["message"] and "Error" in e["stack"] for e in errors)
    consoles = [c["payload"] for c in custom if c["tag"] == "streamdom-console"]
    assert [(c["level"], c["message"]) for c in consoles] == [
        ("error", 'could not save {"code":7}'), ("warn", "slow")]
    assert all(len(c["stack"]) <= 2048 for c in consoles)
    page.context.close()


def test_capture_can_be_switched_off(server: ServerProcess, browser: Browser,
                                     app_server: AppServer) -> None:
    page = recorded_page(browser, app_server, server.http, "pm-off", APP,
                         options=", recordErrors: false, recordConsole: false, recordNetwork: false")
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="snapshot")
    page.evaluate("""async () => { console.error('x'); Promise.reject(new Error('y'));
        await fetch('/nothing').catch(() => {}); await new Promise((res) => setTimeout(res, 50)); }""")
    page.click("#save")
    recorded_all(page)
    tags = {e["data"]["tag"] for e in server.get_json("/api/sessions/pm-off/events") if e["type"] == 5}
    assert not tags & {"streamdom-error", "streamdom-console", "streamdom-network"}
    s = summary(server, "pm-off")
    assert (s["errors"], s["warnings"], s["network_errors"]) == (0, 0, 0)
    page.context.close()


SILENT = """<div id="pad" style="width:300px;height:200px;background:#eee">nothing happens here</div>"""


def test_rage_clicks_and_dead_clicks(server: ServerProcess, browser: Browser,
                                     app_server: AppServer) -> None:
    reacts = recorded_page(browser, app_server, server.http, "pm-reacts", APP)
    silent = recorded_page(browser, app_server, server.http, "pm-silent", SILENT)
    for page, target in ((reacts, "#save"), (silent, "#pad")):
        wait_for(lambda p=page: status(p)["ackedSeq"] >= 2, what="snapshot")
        box = page.locator(target).bounding_box()
        assert box is not None
        x, y = box["x"] + 20, box["y"] + 10
        page.mouse.click(x, y)  # one click, then a pause
        page.wait_for_timeout(300)
        for i in range(4):  # a burst: four clicks within a second, a few px apart
            page.mouse.click(x + 3 * i, y + 2 * i)
            page.wait_for_timeout(60)
        page.wait_for_timeout(1300)
        page.mouse.move(x + 100, y + 100)  # a later event decides the last clicks
        page.mouse.move(x + 110, y + 110)
        page.wait_for_timeout(200)
        recorded_all(page)
    r, s = summary(server, "pm-reacts"), summary(server, "pm-silent")
    assert r["rage_clicks"] == 1 and s["rage_clicks"] == 1
    assert r["dead_clicks"] == 0, "every click on the button changed the page"
    assert s["dead_clicks"] == 5, "no click on the pad changed anything"
    assert ids(server, "has_dead=1") == ["pm-silent"]
    assert sorted(ids(server, "has_rage=1")) == ["pm-reacts", "pm-silent"]
    for page in (reacts, silent):
        page.context.close()


SECRETS = ("pm1@example.com", "Quarterly numbers", "typed-secret-words", "Placeholder text",
           "Tooltip text", "Submit form")
PRIVATE = """<p id="who">signing in pm1@example.com</p><h1 title="Tooltip text">Quarterly numbers</h1>
<input id="field" placeholder="Placeholder text"><input type="submit" value="Submit form">
<ul id="list"></ul><button id="add">+</button>
<script>
document.getElementById('add').onclick = () => {
  const li = document.createElement('li');
  li.textContent = document.getElementById('field').value;  // the typed text, rendered
  document.getElementById('list').appendChild(li);
};
</script>"""


def test_strict_privacy_leaves_no_typed_or_rendered_text_in_the_archive(
        server: ServerProcess, browser: Browser, app_server: AppServer) -> None:
    page = recorded_page(browser, app_server, server.http, "pm-strict", PRIVATE,
                         options=", privacy: 'strict'")
    wait_for(lambda: status(page)["ackedSeq"] >= 2, what="snapshot")
    page.fill("#field", "typed-secret-words")
    page.click("#add")
    page.click("#who")
    page.evaluate("document.getElementById('who').textContent = 'Quarterly numbers again'")
    page.wait_for_timeout(100)
    assert "typed-secret-words" in page.inner_text("#list")  # the page did render it
    recorded_all(page)
    page.context.close()
    # The archive's files themselves, read by DuckDB as an analyst would.
    wait_for(lambda: not summary(server, "pm-strict")["live"], what="session ended")
    loc = lake.Location.local(server.data_dir)

    def archived() -> int:
        con = lake.connect(loc, read_only=True)
        try:
            return con.execute("SELECT count(*) FROM lake.events WHERE session_id = 'pm-strict'"
                               ).fetchone()[0]
        finally:
            con.close()

    wait_for(lambda: archived() >= status_count(server, "pm-strict"), timeout=30, what="flush")
    con = lake.connect(loc, read_only=True)
    try:
        texts = [r[0] for r in con.execute(
            "SELECT data || coalesce(extra, '') FROM lake.events WHERE session_id = 'pm-strict'").fetchall()]
        index = con.execute("SELECT * FROM lake.sessions WHERE session_id = 'pm-strict'").fetchall()
    finally:
        con.close()
    blob = "\n".join(texts) + "\n" + repr(index)
    assert '"source":5' in blob and "***" in blob  # inputs and text were recorded, masked
    for secret in SECRETS:
        assert secret not in blob, secret
    assert "signing" not in blob


def status_count(server: ServerProcess, session_id: str) -> int:
    """How many events the server holds for a session."""
    return int(summary(server, session_id)["event_count"])


def test_closing_the_tab_ends_the_session_at_once(tmp_path, browser: Browser,
                                                  app_server: AppServer) -> None:
    # A grace period of a minute: only the goodbye can end the session before the deadline.
    srv = ServerProcess(tmp_path / "data", *TEST_SERVER_ARGS, "--grace-seconds", "60").start()
    try:
        closing = recorded_page(browser, app_server, srv.http, "pm-bye", APP)
        dropped = recorded_page(browser, app_server, srv.http, "pm-drop", APP)
        for page in (closing, dropped):
            wait_for(lambda p=page: status(p)["ackedSeq"] >= 2, what="snapshot")
        assert summary(srv, "pm-bye")["live"] and summary(srv, "pm-drop")["live"]
        closing.close()
        t0 = time.monotonic()
        wait_for(lambda: not summary(srv, "pm-bye")["live"], timeout=10, what="ended after goodbye")
        took = time.monotonic() - t0
        print(f"session ended {took * 1000:.0f} ms after its tab closed")
        assert summary(srv, "pm-drop")["live"], "a tab still open stays live"
        # Navigating away says goodbye too, and the next page load of the tab is live again.
        dropped.goto(app_server.origin + "/pm-drop.html")
        # (ackedSeq alone proves nothing here: the new page takes it over from the tab's storage)
        wait_for(lambda: status(dropped)["connected"] and status(dropped)["ackedSeq"] >= 1, what="reloaded")
        assert summary(srv, "pm-drop")["live"] and summary(srv, "pm-drop")["tabs"] == 1
        dropped.context.close()
        closing.context.close()
    finally:
        srv.stop()

