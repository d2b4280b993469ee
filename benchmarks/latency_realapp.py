"""Browser-to-browser latency on real framework apps: StreamDOM beside rrweb's own floors.

The subjects are TodoMVC in React and in Vue (benchmarks/realapps/, built from the npm packages
react, react-dom, vue and todomvc-app-css by esbuild into benchmarks/out/realapp/). Playwright
drives them with keyboard and mouse: type a todo and press Enter, type a second one, click a
toggle, double-click a label and edit it, hover and click the destroy button; every round on
each app page, the order of the pages alternating.

Four paths, side by side in one run, on the same interactions: all at once (every path's pages
open together, each round driven on every app page in turn), or with --alone each path with the
machine to itself in turn (only its own app page and viewer open; the paths take turns, pass
after pass in a rotating order). All at once, the 7-9 pages share the 2 cores: every change's
rendering in any page, and rrweb's live-mode timer, compete with the path being timed.
  (a) StreamDOM: the app page runs the real recorder (/streamdom.js) into a real server; the PM
      viewer is the real player (/sessions/<id>).
  (b) the rrweb floor: a second copy of the app runs @rrweb/record (the package StreamDOM's
      recorder bundles) with StreamDOM's default record options, each event sent as soon as
      it is emitted to a bare Tornado relay (no storage), to a page whose rrweb Replayer casts
      each event synchronously on arrival (the best rrweb allows).
  (c) rrweb's documented live mode on the same relay: `new Replayer([], {liveMode: true})`,
      `startLive(Date.now() - 1000)`, then `addEvent` per event.
  (d) the bare DOM relay floor of latency_browser.py: a copy of the app with no recorder sends
      the name of each change to the relay in the same task as the change, and a page sets it
      into a node.

A change is a todo added, completed, edited or removed. A MutationObserver that the app page
creates before the app and the recorder (so it runs first after each DOM update) stamps when
it happened; in each viewer one on the replayer iframe's document stamps when it shows. For (a)
it also splits the time at the recorder's WebSocket.send of the first frame after the change
that carries a DOM mutation and at the player's WebSocket message that carries it.
Times are performance.timeOrigin + performance.now() in each page (one clock for the browser),
with the residual offset between pages measured by min-RTT probes and removed.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_browser import clock_offset
from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    BareRelay,
    PageServer,
    ServerProcess,
    fmt_pct,
    machine_note,
    median,
    percentiles,
    write_json,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

BUILD = ROOT / "benchmarks" / "out" / "realapp"
APPS = {"react": "react-todo.js", "vue": "vue-todo.js"}
TARGET_RATIO = 1.25  # StreamDOM p50 vs the rrweb floor (b)
TARGET_P99_MS = 16.0
MUTATION = r'/"source":0[,}]/'  # an rrweb incremental event of source Mutation, in a frame
TRACE_CATEGORIES = ["toplevel", "blink.user_timing", "devtools.timeline", "v8.execute",
                    "disabled-by-default-devtools.timeline", "disabled-by-default-devtools.timeline.stack", "net", "mojom"]

# Which todos exist, and which are completed, read off a document; changes become marks
# add:<text>, done:<text>, edit:<new text>, del:<text>. Shared by app pages and viewers.
TODO_DIFF = r"""
const clock = () => performance.timeOrigin + performance.now();
function todoState(doc) {
  const m = new Map();
  for (const li of doc.querySelectorAll('.todo-list li')) {
    const l = li.querySelector('label');
    if (l) m.set(l.textContent, li.classList.contains('completed'));
  }
  return m;
}
// A viewer may apply several changes in one step (rrweb's live mode plays them from a timer):
// a change seen together with a later one counts as seen then (a todo that shows up completed
// was added and completed; an edited one was added). Callers keep the first time of each mark.
function todoMarks(prev, cur) {
  const out = [];
  for (const [k, done] of cur) {
    if (!prev.has(k)) out.push(...(k.endsWith('-e') ? ['add:' + k.slice(0, -2), 'edit:' + k] : ['add:' + k]));
    if (done && !prev.get(k)) out.push('done:' + k);
  }
  for (const k of prev.keys()) if (!cur.has(k) && !cur.has(k + '-e')) out.push('del:' + k);
  return out;
}
"""

APP_PAGE = r"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>TodoMVC %(app)s</title>
<link rel="stylesheet" href="/build/todomvc.css">
<script>%(diff)s
window.bench = { marks: {}, sends: [] };
const floor = %(floor)s;
let prev = new Map();
new MutationObserver(() => {  // created before the app and the recorder: runs first
  const t = clock(), cur = todoState(document);
  for (const k of todoMarks(prev, cur)) {
    if (k in bench.marks) continue;
    bench.marks[k] = t;
    performance.mark('change ' + k);
    if (floor && floor.readyState === 1) floor.send(k);  // (d), in the same task as the change
  }
  prev = cur;
}).observe(document, { childList: true, subtree: true, attributes: true, characterData: true });
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (d) {  // stage stamps: recorder frames carrying a mutation
  if (/\/ingest|\/r\/rrweb-/.test(this.url) && typeof d === 'string' && %(mutation)s.test(d)) {
    bench.sends.push(clock());
    performance.mark('send');
  }
  return send.call(this, d);
};
</script>
%(head)s
</head><body><section id="app"></section>
<script src="/build/%(bundle)s"></script>
<script>%(start)s</script>
</body></html>"""

STREAMDOM_HEAD = '<script src="%(server)s/streamdom.js"></script>'
STREAMDOM_START = "StreamDOM.init({ sessionId: new URLSearchParams(location.search).get('session') });"
RRWEB_HEAD = '<script src="/build/rrweb-record.js"></script>'
# StreamDOM's default record options (recorder/StreamDOM.ts), so both recorders do the same work.
RRWEB_START = """
const ws = new WebSocket('%(relay)s/r/rrweb-%(app)s');
window.rrwebReady = false;
ws.onopen = () => {
  rrwebRecord({
    emit: (e) => ws.send(JSON.stringify(e)),
    checkoutEveryNms: 6e4, maskAllInputs: true, maskInputOptions: { password: true },
    maskInputFn: (t) => '*'.repeat(t.length), errorHandler: () => true,
    sampling: { mousemove: 50, mousemoveCallback: 100 },
  });
  window.rrwebReady = true;
};"""

RRWEB_VIEWER = """<!doctype html><html><head><meta charset="utf-8"><title>rrweb %(mode)s</title>
<link rel="stylesheet" href="/build/rrweb-replay.css">
<script src="/build/rrweb-replay.js"></script></head>
<body><div id="stage"></div><script>
const mode = '%(mode)s', root = document.getElementById('stage');
let r;
if (mode === 'live') {  // rrweb's documented live mode
  r = new rrwebReplayer([], { root, liveMode: true });
  r.startLive(Date.now() - 1000);
} else {  // the floor: every event cast synchronously when it arrives
  r = new rrwebReplayer([], { root, liveMode: true, useVirtualDom: false, showWarning: false });
  r.startLive(Date.now());
}
const base = Date.now();
const ws = new WebSocket('%(relay)s/r/rrweb-%(app)s');
ws.onmessage = (m) => {
  const e = JSON.parse(m.data);
  if (mode === 'live') return r.addEvent(e);
  e.timestamp = Math.min(e.timestamp, Date.now());
  e.delay = e.timestamp - base;  // what addEvent would set: the timer needs it for the cursor
  r.getCastFn(e, false)();
};
</script></body></html>"""

FLOOR_VIEWER = """<!doctype html><html><head><meta charset="utf-8"><title>floor</title></head>
<body><p id="t">-</p><script>
const clock = () => performance.timeOrigin + performance.now();
window.bench = { got: {} };
const el = document.getElementById('t');
new MutationObserver(() => {
  const t = clock(), k = el.textContent;
  if (!(k in bench.got)) bench.got[k] = t;
}).observe(el, { childList: true, characterData: true, subtree: true });
const ws = new WebSocket('%(relay)s/r/floor-%(app)s');
ws.onmessage = (e) => { el.textContent = e.data; };
</script></body></html>"""

# Installed before the viewer's scripts: stamps WebSocket messages that carry a DOM mutation
# (first listener, so before the viewer's own handler) and watches the replayer's iframe.
VIEWER_PROBE = TODO_DIFF + r"""
window.bench = { got: {}, recv: [], installs: 0 };
const WS = window.WebSocket;
window.WebSocket = class extends WS {
  constructor(...a) {
    super(...a);
    this.addEventListener('message', (e) => {
      if (typeof e.data === 'string' && %(mutation)s.test(e.data)) {
        bench.recv.push(clock());
        performance.mark('message');
      }
    });
  }
};
let doc = null, mo = null, prev = new Map();
const look = (d) => {
  const t = clock(), cur = todoState(d);
  for (const k of todoMarks(prev, cur)) if (!(k in bench.got)) {
    bench.got[k] = t;
    performance.mark('shown ' + k);
  }
  prev = cur;
};
setInterval(() => {  // the replayer rebuilds its iframe document on a full snapshot
  const f = document.querySelector('.replayer-wrapper iframe');
  const d = f && f.contentDocument;
  if (!d || d === doc) return;
  if (mo) mo.disconnect();
  doc = d;
  bench.installs++;
  prev = todoState(d);
  mo = new MutationObserver(() => look(d));
  mo.observe(d, { childList: true, subtree: true, attributes: true, characterData: true });
}, 50);
""".replace("%(mutation)s", MUTATION)


def build_apps() -> None:
    """Bundle the apps and rrweb's pieces with esbuild (about a second)."""
    subprocess.run(["node", "benchmarks/realapps/build.mjs"], cwd=ROOT, check=True)


def files() -> dict[str, str | bytes]:
    """The built bundles and styles, by URL path."""
    return {f"/build/{p.name}": p.read_bytes() for p in BUILD.iterdir() if p.is_file()}


def interact(page: Page, tag: str, pause: float) -> None:
    """One round on one app page, by keyboard and mouse: add two, complete, edit, remove."""
    a, b = f"{tag}-a", f"{tag}-b"

    def item(text: str) -> Any:
        return page.locator(".todo-list li", has=page.locator(f'label:text-is("{text}")'))

    def rest() -> None:
        time.sleep(pause * (0.5 + random.random()))

    page.click(".new-todo")
    page.keyboard.type(a, delay=25)
    page.keyboard.press("Enter")
    rest()
    page.keyboard.type(b, delay=25)
    page.keyboard.press("Enter")
    rest()
    item(a).locator(".toggle").click()
    rest()
    item(b).locator("label").dblclick()
    page.keyboard.press("End")
    page.keyboard.type("-e", delay=25)
    page.keyboard.press("Enter")
    rest()
    row = item(a)
    row.hover()
    row.locator(".destroy").click()
    rest()


def own_page(browser: Browser, viewer: bool) -> Page:
    """A page in a browser context (a window) of its own.

    With all viewers in one context, the floor and rrweb viewers got about one animation frame
    per second from the first round on (the player, opened last, kept 60): they never paid for
    rendering what they applied, and rrweb's live mode, which applies events from animation
    frames, waited for them. A person watching has the page in front of them: one window each.
    """
    if viewer:  # bypass_csp: the probes poll with string predicates, which the viewer's CSP
        # (script-src 'self', no eval) refuses; the pages run the same scripts either way.
        ctx = browser.new_context(viewport={"width": 1300, "height": 900}, bypass_csp=True)
    else:
        ctx = browser.new_context(viewport={"width": 1000, "height": 800})
    return ctx.new_page()


def viewer_page(browser: Browser, url: str) -> Page:
    """A viewer page, in its own window, with the probe installed before its own scripts."""
    page = own_page(browser, viewer=True)
    page.add_init_script(VIEWER_PROBE)
    page.goto(url)
    return page


def frame_rate(page: Page) -> float:
    """Animation frames per second the page gets now (over half a second)."""
    return page.evaluate("""new Promise((done) => {
      let n = 0;
      const tick = () => { n++; requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
      setTimeout(() => done(n * 2), 500);
    })""")


# The viewer page's main-thread work (Chromium's Performance domain, per page): how often it
# recalculated styles and laid out, and how long its tasks ran, over the measured rounds.
WORK_METRICS = ("RecalcStyleCount", "LayoutCount", "TaskDuration", "ScriptDuration")


class MainThread:
    """Counts one page's main-thread work between start() and stop() over CDP."""

    def __init__(self, page: Page) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")
        self.base: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        """The page's cumulative counters now."""
        got = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return {k: float(got.get(k, 0.0)) for k in WORK_METRICS}

    def start(self) -> None:
        """Counting starts now."""
        self.base = self.read()

    def stop(self) -> dict[str, float]:
        """Work since start(): style recalcs and layouts (counts), task and script time (ms)."""
        now = self.read()
        d = {k: now[k] - self.base.get(k, 0.0) for k in WORK_METRICS}
        return {"style_recalcs": d["RecalcStyleCount"], "layouts": d["LayoutCount"],
                "task_ms": d["TaskDuration"] * 1000, "script_ms": d["ScriptDuration"] * 1000}


def wait_for_app(page: Page) -> None:
    """Until the viewer's replayer iframe shows the app."""
    page.wait_for_function(
        "(() => { const f = document.querySelector('.replayer-wrapper iframe');"
        " return f && f.contentDocument && f.contentDocument.querySelector('.new-todo'); })()",
        timeout=30000)


def warm_of(prefixes: set[str]) -> Any:
    """Whether a change belongs to a warm-up round (its tag starts with one of prefixes)."""
    return lambda k: k.split(":", 1)[1].startswith(tuple(prefixes))


def split(marks: dict[str, float], sends: list[float], recv: list[float], seen: dict[str, float],
          off: float, warm: Any) -> list[tuple[float, float, float]]:
    """Per change: mutation -> the recorder's next mutation frame sent -> the viewer's next
    mutation frame received -> the change shows in the viewer (recv is on the app's clock)."""
    out = []
    for k, t0 in marks.items():
        if warm(k) or k not in seen:
            continue
        t_send = next((t for t in sends if t >= t0), None)
        t_msg = next((t for t in recv if t_send is not None and t >= t_send - 0.2), None)
        if t_send is not None and t_msg is not None:
            out.append((t_send - t0, t_msg - t_send, seen[k] - off - t_msg))
    return out


PATHS = ("streamdom", "rrweb_floor", "rrweb_live", "dom_floor", "baseline")
STAGED = ("streamdom", "rrweb_floor", "baseline")  # recorder frames stamped at send and message


def open_paths(paths: tuple[str, ...], app: str, server: ServerProcess, base: ServerProcess | None,
               pages: PageServer, browser: Browser) -> tuple[dict[str, Page], dict[str, Page]]:
    """Each path's app page and viewer, every page in a window of its own.

    The relay's viewers open first (they must see the recorder's full snapshot); (b) and (c)
    share one app page when they run together. (d) has an app copy of its own: sending each
    change in the page's task and the floor viewer's work would otherwise burden (a)'s page.
    """
    sid = f"realapp-{app}-{time.time_ns()}"
    viewers: dict[str, Page] = {}
    for path, url in (("dom_floor", f"/floor-{app}"), ("rrweb_floor", f"/rrweb-{app}-sync"),
                      ("rrweb_live", f"/rrweb-{app}-live")):
        if path in paths:
            viewers[path] = viewer_page(browser, pages.http + url)
            viewers[path].wait_for_function("window.bench")

    def app_page(url: str, ready: str) -> Page:
        page = own_page(browser, viewer=False)
        page.goto(pages.http + url)
        page.wait_for_function(ready)
        return page

    apps: dict[str, Page] = {}
    recorder = "window.StreamDOM && StreamDOM.status().connected"
    if "streamdom" in paths:
        apps["streamdom"] = app_page(f"/app-{app}-streamdom?session={sid}", recorder)
    if "rrweb_floor" in paths or "rrweb_live" in paths:
        rr = app_page(f"/app-{app}-rrweb", "window.rrwebReady")
        apps.update({p: rr for p in ("rrweb_floor", "rrweb_live") if p in paths})
    if "dom_floor" in paths:
        apps["dom_floor"] = app_page(f"/app-{app}-dom", "floor.readyState === 1")
    if "streamdom" in paths:
        viewers["streamdom"] = viewer_page(browser, f"{server.http}/sessions/{sid}")
    if "baseline" in paths and base is not None:  # (a0): the baseline checkout's server and bundles
        apps["baseline"] = app_page(f"/app-{app}-baseline?session={sid}-base", recorder)
        viewers["baseline"] = viewer_page(browser, f"{base.http}/sessions/{sid}-base")
    for path in ("streamdom", "baseline", "rrweb_floor", "rrweb_live"):
        if path in viewers:
            wait_for_app(viewers[path])
    return apps, viewers


def drive(paths: tuple[str, ...], app: str, tags: list[str], args: argparse.Namespace,
          server: ServerProcess, base: ServerProcess | None, pages: PageServer,
          browser: Browser) -> dict[str, dict[str, Any]]:
    """Open the paths' pages, run one round per tag on every app page, and collect per path."""
    apps, viewers = open_paths(paths, app, server, base, pages, browser)
    work = {p: MainThread(viewers[p]) for p in STAGED if p in viewers}
    offsets = {p: clock_offset(apps[p], v) for p, v in viewers.items()}
    order = list(dict.fromkeys(apps.values()))  # each app page once, (b) and (c) share one
    for w in work.values():
        w.start()
    for r, tag in enumerate(tags):
        for k in range(len(order)):  # every page goes first in turn
            interact(order[(r + k) % len(order)], tag, args.pause / 1000)
    # (c) plays everything a second late, or later
    time.sleep(args.tail if "rrweb_live" in viewers else min(args.tail, 1.0))
    main_thread = {p: w.stop() for p, w in work.items()}
    # Every viewer must still be rendering at full rate: a throttled one would be timed
    # without paying for its frames (see own_page).
    out: dict[str, dict[str, Any]] = {}
    for p, v in viewers.items():
        res: dict[str, Any] = {"marks": apps[p].evaluate("bench.marks"), "got": v.evaluate("bench.got"),
                               "offset": offsets[p], "fps": frame_rate(v)}
        if p in STAGED:
            res["sends"] = apps[p].evaluate("bench.sends")
            res["recv"] = [t - offsets[p] for t in v.evaluate("bench.recv")]
            res["main_thread"] = main_thread[p]
        if p == "streamdom":
            res["installs"] = v.evaluate("bench.installs")
        out[p] = res
    for page in {*apps.values(), *viewers.values()}:
        page.context.close()
    return out


def run_app(app: str, args: argparse.Namespace, server: ServerProcess, base: ServerProcess | None,
            pages: PageServer, browser: Browser) -> dict[str, Any]:
    """Every path on the same interactions, together or (--alone) each alone in turn; returns
    the per-path samples and stages."""
    paths = tuple(p for p in PATHS if p != "baseline" or base is not None)
    # Together: every path's pages open at once, each round on every app page (one pass).
    # Alone: each path's pages are all that is open while it runs its rounds; the paths take
    # turns, pass after pass, in a rotating order, so a drift of the machine hits all alike.
    if args.alone:
        turns = [(i, (paths[(i + k) % len(paths)],)) for i in range(args.passes)
                 for k in range(len(paths))]
    else:
        turns = [(0, paths)]
    merged: dict[str, dict[str, Any]] = {
        p: {"samples": {}, "stages": [], "offsets": [], "fps": [], "installs": 0, "missing": 0,
            "main_thread": {}} for p in paths}
    for i, group in turns:
        tags = [f"{app}{i}-{r}" for r in range(args.rounds)]
        warm = warm_of({f"{app}{i}-0-"})
        for p, res in drive(group, app, tags, args, server, base, pages, browser).items():
            m, marks, seen, off = merged[p], res["marks"], res["got"], res["offset"]
            got = {k: seen[k] - off - t for k, t in marks.items() if k in seen and not warm(k)}
            m["samples"].update(got)
            m["missing"] += len([k for k in marks if not warm(k)]) - len(got)
            m["offsets"].append(off)
            m["fps"].append(res["fps"])
            m["installs"] += res.get("installs", 0)
            if p in STAGED:
                m["stages"] += split(marks, res["sends"], res["recv"], seen, off, warm)
                for k, x in res["main_thread"].items():
                    m["main_thread"][k] = m["main_thread"].get(k, 0.0) + x
    if args.verbose:
        for k, t in sorted(merged["rrweb_live"]["samples"].items()):
            print(f"    {k:16s} (c) {t:9.1f} ms")
    return {
        "samples": {p: m["samples"] for p, m in merged.items()},
        "stages": {p: merged[p]["stages"] for p in STAGED if p in merged},
        "offsets": {p: m["offsets"] for p, m in merged.items()},
        "missing": {p: m["missing"] for p, m in merged.items()},
        "player_iframe_installs": merged["streamdom"]["installs"],
        "main_thread": {p: merged[p]["main_thread"] for p in STAGED if p in merged},
        "viewer_fps": {p: min(m["fps"]) for p, m in merged.items()},
    }


def report(app: str, res: dict[str, Any]) -> dict[str, Any]:
    """Print one app's figures; return them as JSON-able percentiles."""
    s = res["samples"]
    pct = {path: percentiles(list(v.values())) for path, v in s.items()}
    floor_b = pct["rrweb_floor"]["p50"]
    offsets = ", ".join(f"{k} {'/'.join(f'{x:+.2f}' for x in v)}" for k, v in res["offsets"].items())
    print(f"\n{app}: {pct['streamdom']['n']} changes per path (clock offsets, ms: {offsets})")
    labels = {
        "streamdom": "(a) StreamDOM  recorder -> server -> player     ",
        "rrweb_floor": "(b) rrweb floor  record -> relay -> sync cast   ",
        "rrweb_live": "(c) rrweb live mode  startLive(now-1s)+addEvent",
        "dom_floor": "(d) bare DOM relay  text -> relay -> node      ",
        "baseline": "(a0) StreamDOM at the --baseline checkout     ",
    }
    for path, label in labels.items():
        if path not in pct:
            continue
        ratio = pct[path]["p50"] / floor_b if floor_b > 0 else float("nan")
        print(f"  {label} {fmt_pct(pct[path])}  {ratio:5.2f}x (b)")
    names = ("mutation -> recorder send", "send -> viewer ws message", "message -> node in iframe")
    for path, tag in (("streamdom", "(a)"), ("rrweb_floor", "(b)"), ("baseline", "(a0)")):
        st = res["stages"].get(path)
        for i, name in enumerate(names if st else ()):
            col = [x[i] for x in st]
            print(f"  {tag} stage {name:27s} median {median(col):6.2f} ms  "
                  f"p90 {percentiles(col)['p90']:6.2f}  max {max(col):7.2f}")
    pa, pb = pct["streamdom"], pct["rrweb_floor"]
    print(f"  targets: p50 (a) <= {TARGET_RATIO}x (b): {pa['p50'] / pb['p50']:.2f}x "
          f"{'ok' if pa['p50'] <= TARGET_RATIO * pb['p50'] else 'MISSED'}; p99 (a) <= {TARGET_P99_MS:g} ms: "
          f"{pa['p99']:.2f} {'ok' if pa['p99'] <= TARGET_P99_MS else 'MISSED'}; "
          f"(c)/(a) at p50: {pct['rrweb_live']['p50'] / pa['p50']:.0f}x")
    for path, tag in (("streamdom", "(a) "), ("rrweb_floor", "(b) "), ("baseline", "(a0)")):
        w = res["main_thread"].get(path)
        if w:
            print(f"  {tag} viewer main thread over the rounds: {w['style_recalcs']:6.0f} style recalcs, "
                  f"{w['layouts']:6.0f} layouts, tasks {w['task_ms']:7.0f} ms (script {w['script_ms']:6.0f} ms)")
    print(f"  viewers' lowest frame rates after their rounds: "
          f"{', '.join(f'{k} {v:.0f}/s' for k, v in res['viewer_fps'].items())}")
    if any(res["missing"].values()):
        print(f"  changes never seen: {res['missing']}")
    return {"percentiles_ms": pct, "stages_ms": res["stages"], "offsets_ms": res["offsets"],
            "missing": res["missing"], "player_iframe_installs": res["player_iframe_installs"],
            "viewer_main_thread": res["main_thread"], "viewer_fps": res["viewer_fps"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, start the server and the relay, measure every app; print and return the figures."""
    from playwright.sync_api import sync_playwright

    build_apps()
    relay = BareRelay().start()
    relay_ws = relay.ws
    results: dict[str, Any] = {"machine": machine_note(), "rounds": args.rounds, "apps": {},
                               "mode": f"alone, {args.passes} passes" if args.alone else "together"}
    with tempfile.TemporaryDirectory(prefix="streamdom-realapp-") as tmp:
        server = ServerProcess(Path(tmp) / "data", "--log-level", "WARNING").start()
        base = None
        if args.baseline:
            base = ServerProcess(Path(tmp) / "base", "--log-level", "WARNING",
                                 root=Path(args.baseline).resolve()).start()
        table: dict[str, str | bytes] = files()
        for app, bundle in APPS.items():
            common = {"app": app, "diff": TODO_DIFF, "bundle": bundle, "mutation": MUTATION}
            table[f"/app-{app}-streamdom"] = APP_PAGE % {
                **common, "floor": "null", "head": STREAMDOM_HEAD % {"server": server.http},
                "start": STREAMDOM_START}
            table[f"/app-{app}-dom"] = APP_PAGE % {  # no recorder: (d) only
                **common, "floor": f"new WebSocket('{relay_ws}/r/floor-{app}')", "head": "",
                "start": ""}
            if base is not None:
                table[f"/app-{app}-baseline"] = APP_PAGE % {
                    **common, "floor": "null", "head": STREAMDOM_HEAD % {"server": base.http},
                    "start": STREAMDOM_START}
            table[f"/app-{app}-rrweb"] = APP_PAGE % {
                **common, "floor": "null", "head": RRWEB_HEAD,
                "start": RRWEB_START % {"relay": relay_ws, "app": app}}
            for mode in ("sync", "live"):
                table[f"/rrweb-{app}-{mode}"] = RRWEB_VIEWER % {"mode": mode, "relay": relay_ws, "app": app}
            table[f"/floor-{app}"] = FLOOR_VIEWER % {"relay": relay_ws, "app": app}
        pages = PageServer(table)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + args.chrome_arg)
                if args.trace:  # user timing marks (change, send, message, shown) + main threads
                    browser.start_tracing(categories=TRACE_CATEGORIES)
                for app in args.apps.split(","):
                    res = run_app(app, args, server, base, pages, browser)
                    results["apps"][app] = report(app, res)
                if args.trace:
                    Path(args.trace).write_bytes(browser.stop_tracing())
                    print(f"wrote the Chromium trace to {args.trace}")
                browser.close()
        finally:
            pages.close()
            server.stop()
            if base is not None:
                base.stop()
            relay.stop()
    return results


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", default=",".join(APPS), help="comma-separated apps (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=12,
                    help="rounds of five changes per app page; the first is warm-up (default %(default)s)")
    ap.add_argument("--pause", type=int, default=200,
                    help="mean ms between interactions, jittered +-50%% (default %(default)s)")
    ap.add_argument("--tail", type=float, default=3.0,
                    help="seconds to wait after the last round for late changes (default %(default)s)")
    ap.add_argument("--alone", action="store_true",
                    help="each path alone in turn (only its app page and viewer open), not all at once")
    ap.add_argument("--passes", type=int, default=2,
                    help="with --alone: turns of every path, each of --rounds rounds (default %(default)s)")
    ap.add_argument("--chrome-arg", action="append", default=[], help="extra Chromium flag (repeatable)")
    ap.add_argument("--verbose", action="store_true", help="print every change's (c) latency")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="also measure (a0): StreamDOM served by another checkout (its code and "
                         "built bundles, e.g. a worktree of main), on the same interactions")
    ap.add_argument("--trace", metavar="PATH", help="record a Chromium trace (open in Perfetto)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return ap


def main() -> None:
    """Entry point."""
    args = build_parser().parse_args()
    print(f"machine: {machine_note()}")
    write_json(args.json, run(args))


if __name__ == "__main__":
    main()
