"""Record real rrweb sessions in headless Chromium: the sample session, and replayable workloads.

Default: data/sample/todomvc-session.json. A StreamDOM server runs in a subprocess; Chromium
loads benchmarks/pages/todo.html from a loopback page server, with the real recorder bundle from
the server's /streamdom.js recording it to /ingest; Playwright plays about a minute of user
activity in fewer seconds (typing, adding, toggling, deleting, filtering, scrolling, mouse moves,
a resize), the recorder is stopped, and the session is fetched back from
/api/sessions/<id>/events exactly as the server stores it.

--workload APP (react or vue): the TodoMVC app of benchmarks/realapps (latency_realapp.py's
subjects, production builds) recorded by the real recorder with its defaults (inputs masked)
while Playwright drives it at a person's pace for about a minute (typing with pauses, clicks,
double-click edits, hovering, mouse moves, wheel scrolling, filters), written to
data/workloads/<APP>-todomvc.json as the frames the recorder sent: each element of "frames" is
the list of events of one `events` frame (what rrweb emitted in one task), captured from the
page's WebSocket by Playwright. Beside each frame it keeps the task it was sent from, as a
probe in the page sees it: frames sent before a message posted on a MessageChannel at the
task's first send is delivered share a task number (what a recorder flushing at the end of the
task, rather than at the end of its first microtask checkpoint, would send as one frame).
latency.py and load.py replay them with --workload.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGES,
    SAMPLE,
    WORKLOADS,
    PageServer,
    ServerProcess,
    frames_per_task,
    load_frames,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

TODOS = ["Email the landlord about the heating", "Prepare slides for Monday standup",
         "Buy birthday present for Sam", "Cancel unused gym membership", "Update CV",
         "Back up the laptop", "Try the new ramen place", "Return library books"]


def act(page: Page, rng: random.Random) -> None:
    """Play the scripted user activity (about a minute of a user's actions, compressed)."""
    mouse = page.mouse

    def wander(x1: float, y1: float, steps: int = 12) -> None:
        mouse.move(x1 + rng.uniform(-4, 4), y1 + rng.uniform(-4, 4), steps=steps)
        page.wait_for_timeout(rng.randint(30, 90))

    def box(sel: str) -> dict[str, float]:
        b = page.locator(sel).first.bounding_box()
        assert b is not None, sel
        return b

    wander(500, 120, 20)
    b = box("#new-todo")
    wander(b["x"] + 200, b["y"] + b["height"] / 2)
    page.click("#new-todo")
    for text in TODOS[:5]:
        page.keyboard.type(text, delay=rng.randint(25, 45))
        page.keyboard.press("Enter")
        page.wait_for_timeout(rng.randint(100, 250))
    # toggle a few
    for i in (1, 3, 6):
        b = box(f"#list li:nth-child({i}) .toggle")
        wander(b["x"] + 6, b["y"] + 6)
        page.click(f"#list li:nth-child({i}) .toggle")
        page.wait_for_timeout(rng.randint(150, 300))
    # filters
    for f in ("active", "completed", "all"):
        b = box(f'.filters a[data-f="{f}"]')
        wander(b["x"] + 10, b["y"] + 8)
        page.click(f'.filters a[data-f="{f}"]')
        page.wait_for_timeout(rng.randint(200, 400))
    # delete two (hover the row first, like a user would)
    for i in (2, 4):
        b = box(f"#list li:nth-child({i})")
        wander(b["x"] + b["width"] - 20, b["y"] + b["height"] / 2)
        page.click(f"#list li:nth-child({i}) .destroy")
        page.wait_for_timeout(rng.randint(150, 300))
    # switch project, add items there, come back
    for proj in ("work", "groceries"):
        b = box(f'#projects li[data-p="{proj}"]')
        wander(b["x"] + 30, b["y"] + 10)
        page.click(f'#projects li[data-p="{proj}"]')
        page.click("#new-todo")
        for text in TODOS[5:7] if proj == "work" else TODOS[7:]:
            page.keyboard.type(text, delay=rng.randint(25, 45))
            page.keyboard.press("Enter")
        page.wait_for_timeout(rng.randint(200, 400))
    page.click('#projects li[data-p="personal"]')
    page.click("#clear")
    # notes textarea
    b = box("#notes")
    wander(b["x"] + 40, b["y"] + 20)
    page.click("#notes")
    page.keyboard.type("call back re: invoice 2291, ask about the discount", delay=30)
    # scroll the activity panel and the window
    b = box("#activity")
    wander(b["x"] + 100, b["y"] + 60)
    for _ in range(8):
        mouse.wheel(0, 120)
        page.wait_for_timeout(rng.randint(60, 120))
    for _ in range(4):
        mouse.wheel(0, -180)
        page.wait_for_timeout(rng.randint(60, 120))
    page.evaluate("window.scrollTo(0, document.body.scrollHeight); 0")
    page.wait_for_timeout(300)
    page.evaluate("window.scrollTo(0, 0); 0")
    # a resize, then idle mouse wandering
    page.set_viewport_size({"width": 1100, "height": 760})
    page.wait_for_timeout(300)
    for _ in range(10):
        wander(rng.uniform(50, 1000), rng.uniform(50, 700), steps=rng.randint(8, 20))
    page.wait_for_timeout(1200)  # the clock ticks once more


TODOMVC_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>TodoMVC %(app)s</title>
<link rel="stylesheet" href="/build/todomvc.css"><script src="%(server)s/streamdom.js"></script>
</head><body><section id="app"></section><script src="/build/%(bundle)s"></script>
<script>StreamDOM.init({ sessionId: new URLSearchParams(location.search).get('session') });</script>
</body></html>"""


def act_todomvc(page: Page, rng: random.Random) -> None:
    """About a minute of a person using TodoMVC: typing with pauses, clicks, edits, scrolling."""
    mouse = page.mouse

    def pause(lo: int, hi: int) -> None:
        page.wait_for_timeout(rng.randint(lo, hi))

    def to(sel: str, dx: float = 0.5, dy: float = 0.5) -> tuple[float, float]:
        b = page.locator(sel).first.bounding_box()
        assert b is not None, sel
        x, y = b["x"] + b["width"] * dx + rng.uniform(-3, 3), b["y"] + b["height"] * dy + rng.uniform(-2, 2)
        mouse.move(x, y, steps=rng.randint(8, 25))
        pause(60, 200)
        return x, y

    def type_like_a_person(text: str) -> None:
        for ch in text:
            page.keyboard.type(ch)
            pause(45, 150 if ch != " " else 260)

    def row(i: int) -> str:
        return f".todo-list li:nth-child({i})"

    to(".new-todo", 0.3)
    page.click(".new-todo")
    for text in TODOS + ["Water the plants", "Book dentist appointment", "Pay electricity bill",
                         "Call grandma"]:
        type_like_a_person(text)
        page.keyboard.press("Enter")
        pause(300, 900)
    for i in (2, 5, 7, 10):  # complete a few
        to(row(i) + " .toggle")
        page.click(row(i) + " .toggle")
        pause(250, 700)
    mouse.move(rng.uniform(300, 700), rng.uniform(200, 500), steps=15)
    for _ in range(6):  # read down the list and back up
        mouse.wheel(0, rng.choice((100, 120, 160)))
        pause(120, 350)
    for _ in range(4):
        mouse.wheel(0, -rng.choice((120, 200)))
        pause(120, 350)
    to(row(3) + " label")  # edit one
    page.dblclick(row(3) + " label")
    pause(200, 500)
    page.keyboard.press("End")
    type_like_a_person(" today")
    page.keyboard.press("Enter")
    pause(300, 800)
    for f in ("active", "completed", "all"):  # the filters (scroll to the footer first)
        page.locator(f'.filters a[href="#/{"" if f == "all" else f}"]').scroll_into_view_if_needed()
        to(f'.filters a[href="#/{"" if f == "all" else f}"]')
        page.click(f'.filters a[href="#/{"" if f == "all" else f}"]')
        pause(500, 1200)
    for i in (4, 1):  # hover a row, then its destroy button
        page.locator(row(i)).scroll_into_view_if_needed()
        to(row(i), 0.6)
        pause(200, 600)
        to(row(i) + " .destroy")
        page.click(row(i) + " .destroy")
        pause(300, 800)
    to(".clear-completed")
    page.click(".clear-completed")
    pause(400, 900)
    to(".new-todo", 0.4)
    page.click(".new-todo")
    type_like_a_person("Plan the weekend")
    page.keyboard.press("Enter")
    for _ in range(8):  # idle mouse wandering, as someone reading
        mouse.move(rng.uniform(50, 950), rng.uniform(50, 550), steps=rng.randint(10, 30))
        pause(150, 600)
    page.wait_for_timeout(1000)


# Numbers the task each recorder frame is sent from: a message posted at a task's first send is
# delivered after that task (and whatever was queued before it), so sends until then share it.
TASK_PROBE = r"""(() => {
  let task = 0, posted = false;
  const ch = new MessageChannel();
  ch.port1.onmessage = () => { posted = false; task++; };
  window.sentTasks = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (d) {
    if (typeof d === 'string' && d.startsWith('{"type":"events"')) {
      sentTasks.push(task);
      if (!posted) { posted = true; ch.port2.postMessage(0); }
    }
    return send.call(this, d);
  };
})();"""


def record_workload(app: str, out: Path, seed: int) -> dict[str, object]:
    """Record one TodoMVC app and return the workload: the recorder's frames, as sent."""
    from latency_realapp import APPS, build_apps, files
    from playwright.sync_api import sync_playwright

    build_apps()
    frames: list[list[dict[str, object]]] = []

    def on_frame(payload: str | bytes) -> None:
        msg = json.loads(payload)
        if msg.get("type") == "events":
            frames.append(msg["events"])

    with tempfile.TemporaryDirectory(prefix="streamdom-workload-") as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        pages = PageServer({**files(), "/app": TODOMVC_PAGE % {
            "app": app, "server": server.http, "bundle": APPS[app]}})
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 600})
                page.add_init_script(TASK_PROBE)
                page.on("websocket", lambda ws: ws.on("framesent", on_frame)
                        if "/ingest" in ws.url else None)
                t0 = time.monotonic()
                page.goto(f"{pages.http}/app?session=workload-{app}")
                page.wait_for_function("window.StreamDOM && StreamDOM.status().connected")
                act_todomvc(page, random.Random(seed))
                page.evaluate("StreamDOM.stop().then(() => 0)")
                page.wait_for_timeout(300)  # the last framesent events reach us
                tasks = page.evaluate("sentTasks")
                browser.close()
            took = time.monotonic() - t0
        finally:
            pages.close()
            server.stop()
    if len(tasks) != len(frames):
        raise SystemExit(f"the page sent {len(tasks)} events frames, Playwright saw {len(frames)}")
    return {"app": f"TodoMVC in {app} (benchmarks/realapps), recorded by record_sample.py "
                   f"--workload {app} --seed {seed}", "seconds": round(took, 1), "frames": frames,
            "tasks": tasks}


def main() -> None:
    """Record, fetch and save the sample session."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=SAMPLE, help="output file (default %(default)s)")
    ap.add_argument("--session-id", default="sample-todomvc", help="session id to record under")
    ap.add_argument("--seed", type=int, default=7, help="random seed of the scripted user")
    ap.add_argument("--max-kb", type=int, default=300, help="warn when the session is larger")
    ap.add_argument("--workload", choices=("react", "vue"),
                    help="record this TodoMVC app's frames to data/workloads/<APP>-todomvc.json instead")
    args = ap.parse_args()
    if args.workload:
        out = args.out if args.out != SAMPLE else WORKLOADS / f"{args.workload}-todomvc.json"
        wl = record_workload(args.workload, out, args.seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(wl, separators=(",", ":"), ensure_ascii=False) + "\n")
        frames = wl["frames"]
        assert isinstance(frames, list)
        n = sum(len(f) for f in frames)
        print(f"recorded {n} events in {len(frames)} frames over {wl['seconds']} s, "
              f"{out.stat().st_size / 1024:.1f} KB; events per frame: {frames_per_task(frames)}")
        print(f"grouped by the task they were sent from: {frames_per_task(load_frames(out, by_task=True))}")
        print(f"wrote {out}")
        return

    from playwright.sync_api import sync_playwright

    html = (PAGES / "todo.html").read_text()
    with tempfile.TemporaryDirectory(prefix="streamdom-sample-") as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        pages = PageServer({"/todo": html.replace('src="/streamdom.js"',
                                                   f'src="{server.http}/streamdom.js"')})
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                t0 = time.monotonic()
                page.goto(f"{pages.http}/todo?session={args.session_id}")
                page.wait_for_function("window.StreamDOM && StreamDOM.status().connected")
                act(page, random.Random(args.seed))
                page.evaluate("StreamDOM.stop().then(() => 0)")
                status = page.evaluate("StreamDOM.status()")
                browser.close()
            took = time.monotonic() - t0
            url = f"{server.http}/api/sessions/{args.session_id}/events"
            with urllib.request.urlopen(url, timeout=30) as r:
                body = r.read()
        finally:
            pages.close()
            server.stop()
    events = json.loads(body)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(body)
    types: dict[int, int] = {}
    for e in events:
        types[e["type"]] = types.get(e["type"], 0) + 1
    span = (events[-1]["timestamp"] - events[0]["timestamp"]) / 1000
    print(f"recorded {len(events)} events over {span:.1f} s ({took:.1f} s wall), "
          f"{len(body) / 1024:.1f} KB, types {dict(sorted(types.items()))}, "
          f"recorder lastSeq {status.get('lastSeq')}")
    print(f"wrote {args.out}")
    if len(body) > args.max_kb * 1024:
        print(f"warning: larger than {args.max_kb} KB")


if __name__ == "__main__":
    main()
