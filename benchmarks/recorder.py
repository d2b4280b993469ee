"""The recorder SDK's cost and reliability: bundle size, main-thread overhead, delivery under disconnects.

1. Bundle: raw and gzip -9 size of streamdom/static/streamdom.js (built by `node build.mjs`).
2. Overhead: headless Chromium loads a busy page (a list of `--rows` rows; every `--period` ms a
   tick changes `--per-tick` nodes: text, attributes, one insert and one remove per 16, i.e.
   ~1,000 node changes per second by default) WITHOUT and WITH the recorder (streaming to a real
   server), `--repeat` times each, interleaved (ABBA order). Per run, over `--duration` seconds
   after a warm-up: main-thread busy time (CDP Performance.getMetrics: TaskDuration, ThreadTime,
   ScriptDuration, layout + style; renderer ProcessTime), requestAnimationFrame frame times,
   time inside the workload per tick (synchronous part, and with the microtasks that follow it,
   where rrweb's MutationObserver callback runs), long tasks. Medians per variant, then the
   recorder's overhead (with - without).
3. Soak: one recorded page for `--soak-seconds` while the server is taken down `--disconnects`
   times at random moments, alternately SIGTERM (clean shutdown) and kill -9, and restarted on
   the same port after 0.2-2 s. Then the recorder is stopped, and /api/sessions/<id>/events?meta=1
   must hold seqs 1..lastSeq of the page's stream exactly once, in order; checked again after a
   final kill -9 + restart (everything acknowledged must survive a crash).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    PageServer,
    ServerProcess,
    machine_note,
    median,
    write_json,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

BUNDLE = ROOT / "streamdom" / "static" / "streamdom.js"
SOURCES = [ROOT / "recorder" / "StreamDOM.ts", ROOT / "recorder" / "global.ts"]
TARGET_GZIP_KB = 26.0

# The busy page. `%(recorder)s` is the recorder's <script> tag (empty without the recorder).
# Query: ?sid=<session> starts recording (when the bundle is there).
BUSY_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>busy page</title>
%(recorder)s
<style>body{font:14px system-ui;margin:16px} li{height:18px;white-space:nowrap}
.hot{color:#b00} .bar{display:inline-block;height:8px;background:#48c;margin-left:6px}</style>
</head><body><h1>Busy page</h1><p>tick <span id="tick">0</span></p><ul id="list"></ul>
<script>
const q = new URLSearchParams(location.search);
const sid = q.get('sid');
if (sid && window.StreamDOM) StreamDOM.init({ sessionId: sid });
const ROWS = %(rows)d;
let seed = 12345;  // mulberry32: both variants do exactly the same work
const rnd = () => { seed |= 0; seed = seed + 0x6D2B79F5 | 0; let t = Math.imul(seed ^ seed >>> 15, 1 | seed);
  t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t; return ((t ^ t >>> 14) >>> 0) / 4294967296; };
const list = document.getElementById('list'), tickEl = document.getElementById('tick');
let made = 0;
function row() {
  const li = document.createElement('li'), n = ++made;
  li.className = 'row';
  li.innerHTML = '<span class="name">item ' + n + '</span> <b class="v">0</b><i class="bar" style="width:20px"></i>';
  return li;
}
for (let i = 0; i < ROWS; i++) list.appendChild(row());
const B = window.bench = { work: [], full: [], frames: [], longtasks: [], ticks: 0, changes: 0,
  running: false, timer: 0, t0: performance.now() };
let nTick = 0;
function tick() {
  const t0 = performance.now(), items = list.children, per = B.per;
  nTick++;
  tickEl.firstChild.data = String(nTick);
  for (let i = 0; i < per; i++) {
    const op = i %% 8, li = items[(rnd() * items.length) | 0];
    if (op < 5) li.firstChild.firstChild.data = 'item ' + ((rnd() * 1e6) | 0) + ' / ' + nTick;
    else if (op == 5) { li.classList.toggle('hot'); li.children[1].textContent = String(nTick); }
    else if (op == 6) li.lastChild.style.width = (10 + ((rnd() * 200) | 0)) + 'px';
    else if (i %% 16 == 7) list.insertBefore(row(), li);
    else if (items.length > 10) li.remove();
  }
  const t1 = performance.now();
  B.work.push(t1 - t0);
  B.ticks++;
  B.changes += per + 1;
  // Queued after the MutationObserver microtask of this task: includes rrweb's mutation work.
  queueMicrotask(() => B.full.push(performance.now() - t0));
}
let last = 0;
function frame(t) { if (last) B.frames.push(t - last); last = t; requestAnimationFrame(frame); }
requestAnimationFrame(frame);
try {
  new PerformanceObserver((l) => { for (const e of l.getEntries()) B.longtasks.push(e.duration); })
    .observe({ entryTypes: ['longtask'] });
} catch (e) {}
B.start = (period, per) => { B.per = per; B.running = true; B.timer = setInterval(tick, period); };
B.stop = () => { B.running = false; clearInterval(B.timer); };
B.reset = () => { B.work = []; B.full = []; B.frames = []; B.longtasks = []; B.ticks = 0;
  B.changes = 0; B.t0 = performance.now(); };
B.take = () => ({ work: B.work, full: B.full, frames: B.frames, longtasks: B.longtasks,
  ticks: B.ticks, changes: B.changes, elapsed: performance.now() - B.t0,
  lastSeq: window.StreamDOM ? StreamDOM.status().lastSeq : 0 });
</script></body></html>"""

# Installed before the page's scripts in the soak: counts /ingest sockets, welcomes, close codes.
WS_PROBE = """(() => {
  const W = window.WebSocket;
  const st = window.__ws = { created: 0, opened: 0, welcomes: 0, closes: {} };
  window.WebSocket = class extends W {
    constructor(url, protocols) {
      super(url, protocols);
      if (!String(url).includes('/ingest')) return;
      st.created++;
      this.addEventListener('open', () => st.opened++);
      this.addEventListener('message', (e) => {
        if (typeof e.data == 'string' && e.data.length < 300 && e.data.includes('welcome')) {
          try { if (JSON.parse(e.data).type == 'welcome') st.welcomes++; } catch (x) {}
        }
      });
      this.addEventListener('close', (e) => { st.closes[e.code] = (st.closes[e.code] || 0) + 1; });
    }
  };
})();"""

METRICS = ("TaskDuration", "ThreadTime", "ProcessTime", "ScriptDuration", "LayoutDuration",
           "RecalcStyleDuration")


# --- 1. bundle ---------------------------------------------------------------------------------
def bundle_size(build: bool) -> dict[str, Any]:
    """Raw and gzip -9 size of the recorder bundle (optionally rebuilt first)."""
    if build:
        subprocess.run(["node", "build.mjs"], cwd=ROOT, check=True)
    if not BUNDLE.exists():
        raise SystemExit(f"{BUNDLE} is missing: run `node build.mjs` (or pass --build)")
    raw = BUNDLE.read_bytes()
    gz = len(gzip.compress(raw, compresslevel=9, mtime=0))
    stale = any(s.exists() and s.stat().st_mtime > BUNDLE.stat().st_mtime for s in SOURCES)
    return {"raw_bytes": len(raw), "gzip9_bytes": gz, "raw_kb": len(raw) / 1024,
            "gzip9_kb": gz / 1024, "target_gzip_kb": TARGET_GZIP_KB,
            "meets_target": gz / 1024 <= TARGET_GZIP_KB, "older_than_sources": stale}


# --- helpers -----------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (nan when empty)."""
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


def mean(values: list[float]) -> float:
    """Arithmetic mean (nan when empty)."""
    return sum(values) / len(values) if values else float("nan")


def get_json(url: str, timeout: float = 30) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def cdp_metrics(cdp: Any) -> dict[str, float]:
    """Chromium's Performance.getMetrics as a dict."""
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def page_html(server_http: str | None, rows: int) -> str:
    """The busy page, with the recorder bundle from the server when server_http is given."""
    tag = f'<script src="{server_http}/streamdom.js"></script>' if server_http else ""
    return BUSY_PAGE % {"recorder": tag, "rows": rows}


# --- 2. overhead -------------------------------------------------------------------------------
def overhead_run(browser: Browser, url: str, recorded: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One run of the busy page (with or without the recorder): main-thread and frame figures."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        page = context.new_page()
        page.goto(url)
        if recorded:
            page.wait_for_function("window.StreamDOM && StreamDOM.status().connected", timeout=20_000)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
        page.evaluate(f"bench.start({args.period}, {args.per_tick})")
        page.wait_for_timeout(args.warmup * 1000)
        page.evaluate("bench.reset()")
        seq0 = page.evaluate("window.StreamDOM ? StreamDOM.status().lastSeq : 0")
        m0 = cdp_metrics(cdp)
        time.sleep(args.duration)
        m1 = cdp_metrics(cdp)
        got = page.evaluate("bench.take()")
        page.evaluate("bench.stop()")
        status = page.evaluate("window.StreamDOM ? StreamDOM.status() : null")
        heap = m1.get("JSHeapUsedSize", 0) / 2**20
    finally:
        context.close()
    wall = got["elapsed"] / 1000
    per_s = {k: (m1.get(k, 0) - m0.get(k, 0)) * 1000 / wall for k in METRICS}  # ms per s
    frames = got["frames"]
    return {
        "recorded": recorded,
        "seconds": wall,
        "busy_ms_per_s": per_s["TaskDuration"],
        "main_cpu_ms_per_s": per_s["ThreadTime"],
        "renderer_cpu_ms_per_s": per_s["ProcessTime"],
        "script_ms_per_s": per_s["ScriptDuration"],
        "layout_style_ms_per_s": per_s["LayoutDuration"] + per_s["RecalcStyleDuration"],
        "fps": len(frames) / wall,
        "frame_p50_ms": pct(frames, 0.5), "frame_p95_ms": pct(frames, 0.95),
        "frame_max_ms": max(frames, default=float("nan")),
        "work_p50_ms": pct(got["work"], 0.5), "work_p95_ms": pct(got["work"], 0.95),
        "work_mean_ms": mean(got["work"]),
        "tick_p50_ms": pct(got["full"], 0.5), "tick_p95_ms": pct(got["full"], 0.95),
        "tick_mean_ms": mean(got["full"]),
        "ticks_per_s": got["ticks"] / wall, "changes_per_s": got["changes"] / wall,
        "longtasks": len(got["longtasks"]), "longtask_ms": sum(got["longtasks"]),
        "events_per_s": (got["lastSeq"] - seq0) / wall if recorded else 0.0,
        "unacked_at_end": (status["lastSeq"] - status["ackedSeq"]) if status else 0,
        "js_heap_mb": heap,
    }


SUMMARY_KEYS = [  # (key, label, format)
    ("busy_ms_per_s", "main-thread busy (TaskDuration) ms/s", "{:8.1f}"),
    ("main_cpu_ms_per_s", "main-thread CPU (ThreadTime) ms/s", "{:8.1f}"),
    ("script_ms_per_s", "  of which script ms/s", "{:8.1f}"),
    ("layout_style_ms_per_s", "  of which layout + style ms/s", "{:8.1f}"),
    ("renderer_cpu_ms_per_s", "renderer process CPU ms/s", "{:8.1f}"),
    ("fps", "frames per second (rAF)", "{:8.1f}"),
    ("frame_p50_ms", "frame time p50 ms", "{:8.2f}"),
    ("frame_p95_ms", "frame time p95 ms", "{:8.2f}"),
    ("work_p50_ms", "workload per tick p50 ms (sync)", "{:8.3f}"),
    ("work_p95_ms", "workload per tick p95 ms (sync)", "{:8.3f}"),
    ("tick_p50_ms", "tick + observers p50 ms", "{:8.3f}"),
    ("tick_p95_ms", "tick + observers p95 ms", "{:8.3f}"),
    ("tick_mean_ms", "tick + observers mean ms", "{:8.3f}"),
    ("changes_per_s", "node changes per s", "{:8.0f}"),
    ("longtasks", "long tasks (> 50 ms)", "{:8.1f}"),
    ("events_per_s", "recorder events per s", "{:8.1f}"),
    ("js_heap_mb", "JS heap used MB (end)", "{:8.1f}"),
]


def overhead(browser: Browser, server: ServerProcess, pages: PageServer,
             args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved runs without and with the recorder; medians and the difference."""
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    order = []
    for i in range(args.repeat):  # ABBA: neither variant always goes first
        order += [False, True] if i % 2 == 0 else [True, False]
    for k, recorded in enumerate(order):
        url = pages.http + ("/busy-rec.html" if recorded else "/busy.html")
        if recorded:
            url += f"?sid=overhead-{k}"
        r = overhead_run(browser, url, recorded, args)
        runs["with" if recorded else "without"].append(r)
        print(f"  run {k + 1:2d}/{len(order)} {'with   ' if recorded else 'without'}: busy "
              f"{r['busy_ms_per_s']:6.1f} ms/s, main CPU {r['main_cpu_ms_per_s']:6.1f} ms/s, "
              f"frames p50/p95 {r['frame_p50_ms']:5.1f}/{r['frame_p95_ms']:5.1f} ms, "
              f"{r['fps']:4.1f} fps, tick p50 {r['tick_p50_ms']:.3f} ms, "
              f"{r['changes_per_s']:.0f} changes/s"
              + (f", {r['events_per_s']:.0f} events/s" if recorded else ""), flush=True)
    med = {v: {k: median([r[k] for r in rs]) for k, _, _ in SUMMARY_KEYS} for v, rs in runs.items()}
    print(f"\n  medians over {args.repeat} runs each ({args.duration:g} s measured per run):")
    print(f"  {'':40s} {'without':>8s} {'with':>8s} {'diff':>8s}")
    for k, label, fmt in SUMMARY_KEYS:
        a, b = med["without"][k], med["with"][k]
        print(f"  {label:40s} {fmt.format(a)} {fmt.format(b)} {fmt.format(b - a)}")
    busy_a, busy_b = med["without"]["busy_ms_per_s"], med["with"]["busy_ms_per_s"]
    cpu_a, cpu_b = med["without"]["main_cpu_ms_per_s"], med["with"]["main_cpu_ms_per_s"]
    # Paired differences (run i with vs run i without) are less noisy than a difference of medians.
    paired = [w["busy_ms_per_s"] - o["busy_ms_per_s"] for w, o in zip(runs["with"], runs["without"],
                                                                       strict=True)]
    result = {
        "busy_overhead_ms_per_s": busy_b - busy_a,
        "busy_overhead_pct": (busy_b - busy_a) / busy_a * 100 if busy_a else float("nan"),
        "busy_overhead_pct_of_core": (busy_b - busy_a) / 10,
        "busy_overhead_paired_median_ms_per_s": median(paired),
        "main_cpu_overhead_ms_per_s": cpu_b - cpu_a,
        "main_cpu_overhead_pct": (cpu_b - cpu_a) / cpu_a * 100 if cpu_a else float("nan"),
        "tick_overhead_p50_ms": med["with"]["tick_p50_ms"] - med["without"]["tick_p50_ms"],
        "frame_p95_diff_ms": med["with"]["frame_p95_ms"] - med["without"]["frame_p95_ms"],
    }
    print(f"\n  recorder overhead: +{result['busy_overhead_ms_per_s']:.1f} ms of main-thread busy time "
          f"per s of page time (+{result['busy_overhead_pct']:.0f}% over the page's own "
          f"{busy_a:.1f} ms/s; {result['busy_overhead_pct_of_core']:.1f}% of one core; paired "
          f"median +{result['busy_overhead_paired_median_ms_per_s']:.1f} ms/s); main-thread CPU "
          f"+{result['main_cpu_overhead_ms_per_s']:.1f} ms/s (+{result['main_cpu_overhead_pct']:.0f}%); "
          f"per tick +{result['tick_overhead_p50_ms']:.3f} ms (p50)")
    return {"runs": runs, "medians": med, "overhead": result}


# --- 3. soak -----------------------------------------------------------------------------------
class Soak:
    """A recorded page, a server taken down and restarted at random moments, and the final check."""

    def __init__(self, browser: Browser, server: ServerProcess, pages: PageServer,
                 args: argparse.Namespace) -> None:
        self.browser, self.server, self.pages, self.args = browser, server, pages, args
        self.rng = random.Random(args.seed)
        self.sid = f"soak-{int(time.time())}"
        self.log: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.context: BrowserContext | None = None
        self.page: Page | None = None
        self.restart_s: list[float] = []

    def status(self) -> dict[str, Any]:
        """The recorder's status() in the page."""
        assert self.page is not None
        return self.page.evaluate("StreamDOM.status()")

    def watch(self, seconds: float) -> None:
        """Wait, sampling the recorder's status every 0.25 s."""
        end = time.monotonic() + seconds
        while True:
            st = self.status()
            st["t"] = time.monotonic() - self.t0
            self.samples.append(st)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.25, left))

    def wait_until(self, pred: Any, timeout: float, what: str) -> bool:
        """Sample status until pred(status) holds; False on timeout (reported, not raised)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self.status()):
                return True
            time.sleep(0.05)
        print(f"  timed out after {timeout:g} s waiting for {what}: {self.status()}")
        return False

    def disconnect(self, i: int) -> None:
        """Take the server down (SIGTERM or kill -9), wait 0.2-2 s, restart it on the same port."""
        kind = "sigterm" if i % 2 == 0 else "kill-9"
        before = self.status()
        t = time.monotonic()
        if kind == "sigterm":
            self.server.stop()
        else:
            self.server.kill()
        stop_s = time.monotonic() - t
        down = self.rng.uniform(0.2, 2.0)
        self.watch(down)
        t1 = time.monotonic()
        self.server.start(port=self.server.port)
        self.restart_s.append(time.monotonic() - t1)
        self.log.append({"i": i + 1, "kind": kind, "at_s": round(t - self.t0, 2),
                         "stop_s": round(stop_s, 3), "down_s": round(down, 3),
                         "restart_s": round(self.restart_s[-1], 3),
                         "lastSeq": before["lastSeq"], "ackedSeq": before["ackedSeq"],
                         "buffered": before["buffered"], "connected": before["connected"]})

    def run(self) -> dict[str, Any]:
        """The whole soak; returns counts and the disconnect log."""
        a = self.args
        self.context = self.browser.new_context(viewport={"width": 1000, "height": 800})
        self.context.add_init_script(WS_PROBE)
        self.page = self.context.new_page()
        self.page.goto(f"{self.pages.http}/busy-soak.html?sid={self.sid}")
        self.page.wait_for_function("StreamDOM.status().connected", timeout=20_000)
        self.page.evaluate(f"bench.start({a.soak_period}, {a.soak_per_tick})")
        self.t0 = time.monotonic()
        end = self.t0 + a.soak_seconds
        n = a.disconnects
        for i in range(n):
            # Spread the remaining disconnects over the remaining time, at random moments.
            expected_down = 1.1 + (mean(self.restart_s) if self.restart_s else 1.5)
            room = end - time.monotonic() - 3.0
            mean_up = max(0.3, room / (n - i) - expected_down)
            self.watch(self.rng.uniform(0.3, 2 * mean_up - 0.3) if mean_up > 0.3 else 0.3)
            self.disconnect(i)
            last = self.log[-1]
            print(f"  {last['i']:2d}. t={last['at_s']:6.1f} s {last['kind']:7s} down "
                  f"{last['down_s']:.2f} s + restart {last['restart_s']:.2f} s; recorder then at "
                  f"seq {last['lastSeq']}, acked {last['ackedSeq']}, buffered {last['buffered']}",
                  flush=True)
        self.watch(max(0.0, end - time.monotonic()))
        elapsed = time.monotonic() - self.t0
        self.page.evaluate("bench.stop()")
        drained = self.wait_until(lambda s: s["connected"] and s["ackedSeq"] == s["lastSeq"], 60,
                                  "the recorder to reconnect and be acknowledged")
        self.page.evaluate("StreamDOM.stop()")
        final = self.status()
        acked = self.wait_until(lambda s: s["ackedSeq"] == s["lastSeq"], 10,
                                "ackedSeq == lastSeq after stop()")
        final = self.status()
        ws = self.page.evaluate("window.__ws")
        time.sleep(0.3)
        check = self.check(final)
        # Everything acknowledged must survive a crash: kill -9, restart, check again.
        self.server.kill()
        self.server.start(port=self.server.port)
        check_after_crash = self.check(final)
        self.context.close()
        durable_max = max((s["ackedSeq"] for s in self.samples), default=0)
        return {
            "session": self.sid, "stream": final["streamId"], "seconds": elapsed,
            "disconnects": len(self.log), "last_seq": final["lastSeq"], "acked_seq": final["ackedSeq"],
            "drained_before_stop": drained, "acked_after_stop": acked,
            "reconnects_observed": ws["welcomes"] - 1, "sockets_opened": ws["opened"],
            "connect_attempts": ws["created"], "close_codes": ws["closes"],
            "max_buffered": max((s["buffered"] for s in self.samples), default=0),
            "max_acked_during_soak": durable_max,
            "check": check, "check_after_crash": check_after_crash, "log": self.log,
            "server_recovery_lines": [ln.strip() for ln in self.server.logs().splitlines()
                                      if "recovered" in ln or "WAL" in ln or "ERROR" in ln],
        }

    def check(self, final: dict[str, Any]) -> dict[str, Any]:
        """Compare the archive's seqs for the page's stream with 1..lastSeq."""
        rows = get_json(f"{self.server.http}/api/sessions/{self.sid}/events?meta=1", timeout=60)
        seqs = [r["seq"] for r in rows if r["streamId"] == final["streamId"]]
        others = sum(1 for r in rows if r["streamId"] != final["streamId"])
        want = set(range(1, final["lastSeq"] + 1))
        have = set(seqs)
        lost = sorted(want - have)
        out_of_order = sum(1 for x, y in zip(seqs, seqs[1:], strict=False) if y <= x)
        gaps = [r["event"]["data"] for r in rows if r["event"].get("type") == 5
                and r["event"].get("data", {}).get("tag") == "streamdom-gap"]
        snapshots = sum(1 for r in rows if r["event"].get("type") == 2)
        return {"events": len(seqs), "lost": len(lost), "lost_ranges": ranges(lost)[:20],
                "duplicated": len(seqs) - len(have), "out_of_order": out_of_order,
                "unexpected": len(have - want), "other_streams": others,
                "gap_reports": gaps, "full_snapshots": snapshots,
                "exact": seqs == list(range(1, final["lastSeq"] + 1))}


def ranges(values: list[int]) -> list[tuple[int, int]]:
    """Sorted ints as (first, last) runs."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def print_soak(r: dict[str, Any]) -> None:
    """Print the soak's outcome."""
    c, c2 = r["check"], r["check_after_crash"]
    print(f"\n  {r['seconds']:.0f} s, {r['disconnects']} disconnects "
          f"({sum(1 for x in r['log'] if x['kind'] == 'sigterm')} SIGTERM, "
          f"{sum(1 for x in r['log'] if x['kind'] == 'kill-9')} kill -9); reconnects observed "
          f"{r['reconnects_observed']} (welcomes after the first), sockets opened "
          f"{r['sockets_opened']} of {r['connect_attempts']} attempts, close codes {r['close_codes']}")
    print(f"  recorder: lastSeq {r['last_seq']}, ackedSeq {r['acked_seq']}, max buffered "
          f"{r['max_buffered']}; drained before stop: {r['drained_before_stop']}, all acked "
          f"after stop: {r['acked_after_stop']}")
    for label, x in (("archive", c), ("after a final kill -9 + restart", c2)):
        print(f"  {label}: events {x['events']}, lost {x['lost']}, duplicated {x['duplicated']}, "
              f"out of order {x['out_of_order']}, unexpected {x['unexpected']}, other streams "
              f"{x['other_streams']}, gap reports {len(x['gap_reports'])}, full snapshots "
              f"{x['full_snapshots']} -> {'OK: seqs are exactly 1..lastSeq' if x['exact'] else 'NOT EXACT'}")
        if x["lost_ranges"]:
            print(f"    lost seq ranges: {x['lost_ranges']}")
    ok = all(x["exact"] for x in (c, c2))
    print(f"  target (0 lost, 0 duplicated across {r['disconnects']} disconnects): "
          f"{'met' if ok else 'NOT MET'}")
    for ln in r["server_recovery_lines"][:10]:
        print(f"    server: {ln[:160]}")


# --- main --------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    """All three parts; returns the results."""
    from playwright.sync_api import sync_playwright

    t_start = time.monotonic()
    out: dict[str, Any] = {"machine": machine_note(), "args": vars(args)}
    print(machine_note())

    b = bundle_size(args.build)
    out["bundle"] = b
    print(f"\n1. bundle {BUNDLE.relative_to(ROOT)}: {b['raw_kb']:.1f} KB raw, {b['gzip9_kb']:.1f} KB "
          f"gzip -9 (target <= {TARGET_GZIP_KB:g} KB: {'met' if b['meets_target'] else 'NOT MET'})"
          + ("  [older than recorder/*.ts: run `node build.mjs` or --build]"
             if b["older_than_sources"] else ""))
    if args.bundle_only:
        return out

    with tempfile.TemporaryDirectory(prefix="streamdom-bench-recorder-") as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        pages = PageServer({"/busy.html": page_html(None, args.rows),
                            "/busy-rec.html": page_html(server.http, args.rows),
                            "/busy-soak.html": page_html(server.http, args.soak_rows)})
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    if args.repeat > 0:
                        t = time.monotonic()
                        print(f"\n2. main-thread overhead: {args.rows} rows, every {args.period} ms "
                              f"{args.per_tick} node changes (~{args.per_tick * 1000 / args.period:.0f}"
                              f"/s), {args.repeat} x without / with, interleaved")
                        out["overhead"] = overhead(browser, server, pages, args)
                        out["overhead"]["wall_s"] = time.monotonic() - t
                    if args.soak_seconds > 0:
                        t = time.monotonic()
                        print(f"\n3. soak: {args.soak_seconds:g} s, {args.disconnects} disconnects, "
                              f"{args.soak_rows} rows, every {args.soak_period} ms "
                              f"{args.soak_per_tick} node changes")
                        soak = Soak(browser, server, pages, args).run()
                        soak["wall_s"] = time.monotonic() - t
                        out["soak"] = soak
                        print_soak(soak)
                finally:
                    browser.close()
        finally:
            pages.close()
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
    out["runtime_s"] = time.monotonic() - t_start
    print(f"\nruntime {out['runtime_s']:.0f} s")
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a short run: --repeat 2 --duration 4 --soak-seconds 30 --disconnects 6")
    ap.add_argument("--build", action="store_true", help="run `node build.mjs` first")
    ap.add_argument("--bundle-only", action="store_true", help="only print the bundle size")
    g = ap.add_argument_group("overhead")
    g.add_argument("--repeat", type=int, default=5,
                   help="runs of each variant, interleaved (default %(default)s; 0 skips)")
    g.add_argument("--duration", type=float, default=8.0,
                   help="measured seconds per run (default %(default)s)")
    g.add_argument("--warmup", type=float, default=1.5,
                   help="seconds of workload before measuring (default %(default)s)")
    g.add_argument("--rows", type=int, default=400, help="rows in the list (default %(default)s)")
    g.add_argument("--period", type=int, default=16, help="ms between ticks (default %(default)s)")
    g.add_argument("--per-tick", type=int, default=16,
                   help="node changes per tick (default %(default)s)")
    g = ap.add_argument_group("soak")
    g.add_argument("--soak-seconds", type=float, default=120.0,
                   help="length of the soak (default %(default)s; 0 skips)")
    g.add_argument("--disconnects", type=int, default=20,
                   help="server take-downs during the soak (default %(default)s)")
    g.add_argument("--soak-rows", type=int, default=300, help="rows (default %(default)s)")
    g.add_argument("--soak-period", type=int, default=25,
                   help="ms between ticks (default %(default)s)")
    g.add_argument("--soak-per-tick", type=int, default=8,
                   help="node changes per tick (default %(default)s)")
    g.add_argument("--seed", type=int, default=1, help="random seed of the disconnect schedule")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return ap


def main() -> None:
    """Entry point."""
    ap = build_parser()
    args = ap.parse_args()
    if args.quick:
        defaults = {"repeat": 5, "duration": 8.0, "soak_seconds": 120.0, "disconnects": 20}
        quick = {"repeat": 2, "duration": 4.0, "soak_seconds": 30.0, "disconnects": 6}
        for k, v in quick.items():
            if getattr(args, k) == defaults[k]:  # explicit options win over --quick
                setattr(args, k, v)
    write_json(args.json, run(args))


if __name__ == "__main__":
    main()
