"""Browser-to-browser latency in headless Chromium: StreamDOM vs a bare WebSocket relay (the floor).

One Chromium, three pages. The recorder page runs the real recorder (/streamdom.js) and every
~100 ms (jittered) sets a text node to `tick-<n>-<Date.now()>` and, in the same task, sends the
same text to a bare relay. Viewer A is the real player (/sessions/<id>): a MutationObserver in
its replayer iframe (`.replayer-wrapper iframe`) notes when the text shows up. Viewer B is the
floor: a page on the bare relay (a tiny Tornado WebSocket fan-out in its own process, no rrweb,
no storage) that sets the text into a DOM node, noted by a MutationObserver too. Times are
performance.timeOrigin + performance.now() in each page, i.e. one clock for all pages of the
browser; the residual offset between pages is measured (min-RTT probes) and subtracted.
Both paths see the same ticks at the same moment: they are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

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
    from playwright.sync_api import Page

PLAYER = ROOT / "streamdom" / "static" / "player.html"
TARGET_RATIO = 3.0
TARGET_MAX_MS = 16.0

RECORDER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>latency recorder</title>
<script src="%(server)s/streamdom.js"></script>
<style>body{font:16px system-ui;margin:40px} #t{font-size:40px}</style></head>
<body><h1>Latency probe</h1><p>tick: <span id="t">tick-0</span></p>
<ul>%(filler)s</ul>
<script>
const sid = new URLSearchParams(location.search).get('session');
if (sid && window.StreamDOM) StreamDOM.init({ sessionId: sid });
const relay = new WebSocket('%(relay)s/r/floor');
window.bench = { sent: {}, n: 0, running: false };
const clock = () => performance.timeOrigin + performance.now();
const el = document.getElementById('t');
function tick() {
  if (!bench.running) return;
  const n = ++bench.n, text = 'tick-' + n + '-' + Date.now();
  bench.sent[n] = clock();
  el.textContent = text;            // the mutation rrweb records ...
  if (relay.readyState === 1) relay.send(text);  // ... and the floor's copy, in the same task
  setTimeout(tick, %(period)s * (0.5 + Math.random()));
}
bench.start = () => { bench.running = true; tick(); };
bench.stop = () => { bench.running = false; };
</script></body></html>"""

FLOOR_VIEWER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>floor viewer</title></head>
<body><p>tick: <span id="t">-</span></p>
<script>
window.bench = { got: {} };
const clock = () => performance.timeOrigin + performance.now();
const el = document.getElementById('t');
new MutationObserver(() => {
  const t = clock(), m = /^tick-(\\d+)-/.exec(el.textContent);
  if (m && !(m[1] in bench.got)) bench.got[m[1]] = t;
}).observe(el, { childList: true, characterData: true, subtree: true });
const ws = new WebSocket('%(relay)s/r/floor');
ws.onmessage = (e) => { el.textContent = e.data; };
</script></body></html>"""

# Installed into the player page: watch the replayer iframe's document for tick texts.
PLAYER_PROBE = """() => {
  window.bench = { got: {}, installs: 0 };
  const clock = () => performance.timeOrigin + performance.now();
  let doc = null, mo = null;
  const scan = (nodes) => {
    const t = clock();
    for (const n of nodes) {
      const m = /tick-(\\d+)-/.exec(n.textContent || '');
      if (m && !(m[1] in bench.got)) bench.got[m[1]] = t;
    }
  };
  const install = () => {
    const f = document.querySelector('.replayer-wrapper iframe');
    const d = f && f.contentDocument;
    if (!d || d === doc) return;
    if (mo) mo.disconnect();
    doc = d;
    bench.installs++;
    mo = new MutationObserver((records) => {
      const nodes = [];
      for (const r of records) {
        if (r.type === 'characterData') nodes.push(r.target);
        else for (const a of r.addedNodes) nodes.push(a);
      }
      scan(nodes);
    });
    mo.observe(d, { childList: true, characterData: true, subtree: true });
  };
  install();
  setInterval(install, 50);  // the replayer rebuilds its iframe document on a full snapshot
  return bench.installs;
}"""


def relay_server() -> None:
    """The bare relay: every text frame on /r/<chan> goes to every other socket of the channel.

    It also speaks the least of StreamDOM's protocol that latency.py's synthetic clients need
    (the floor of `latency.py --floor`): /ingest answers the hello with a welcome and forwards
    every later frame as received to the watchers of its session; /watch/<id> is told it is
    caught up. No validation, no storage, no acks: the cost of Tornado's relaying alone.
    """
    import asyncio
    import json

    from tornado.web import Application
    from tornado.websocket import WebSocketHandler

    channels: dict[str, set[WebSocketHandler]] = {}

    class Relay(WebSocketHandler):
        def check_origin(self, origin: str) -> bool:
            return True

        def open(self, chan: str) -> None:
            self.chan = chan
            self.set_nodelay(True)
            channels.setdefault(chan, set()).add(self)

        def on_message(self, message: str | bytes) -> None:
            for peer in tuple(channels.get(self.chan, ())):
                if peer is not self:
                    peer.write_message(message)

        def on_close(self) -> None:
            channels.get(self.chan, set()).discard(self)

    class Ingest(WebSocketHandler):
        watchers: set[WebSocketHandler] | None = None

        def open(self) -> None:
            self.set_nodelay(True)

        def on_message(self, message: str | bytes) -> None:
            if self.watchers is None:  # the hello
                self.watchers = channels.setdefault(json.loads(message)["sessionId"], set())
                self.write_message('{"type":"welcome","protocol":2,"ackedSeq":0,"resume":"-"}')
                return
            for peer in tuple(self.watchers):
                peer.write_message(message)

    class Watch(Relay):
        def open(self, chan: str) -> None:
            super().open(chan)
            self.write_message('{"type":"caughtup"}')

        def on_message(self, message: str | bytes) -> None:
            pass  # a viewer's pings: no clock here

    async def serve() -> None:
        app = Application([(r"/r/([^/]+)", Relay), (r"/ingest", Ingest), (r"/watch/([^/]+)", Watch)],
                          websocket_max_message_size=64 * 1024 * 1024)
        server = app.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        print(f"RELAY {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def protocol_relay_server() -> None:
    """The same relay as relay_server()'s /ingest and /watch, on asyncio Protocols: no Tornado.

    How cheap relaying can be in this Python without Tornado's streams (latency.py --floor
    asyncio): the handshake parsed by hand, each read's frames parsed from the bytes delivered
    (`data_received`, no Future or coroutine per read), unmasked by Tornado's C helper, and
    every frame forwarded with one `transport.write` per watcher. Only what the benchmark's
    clients send is handled: text frames up to 64-bit lengths, close, no extensions.
    """
    import asyncio
    import base64
    import hashlib
    import json
    import socket
    import struct

    from tornado.util import _websocket_mask

    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    channels: dict[str, set[Conn]] = {}

    def frame(payload: bytes, opcode: int = 1) -> bytes:
        n = len(payload)
        if n < 126:
            return struct.pack("!BB", 0x80 | opcode, n) + payload
        if n < 65536:
            return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
        return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload

    class Conn(asyncio.Protocol):
        transport: asyncio.Transport
        buf = b""
        upgraded = False
        channel: set[Conn] | None = None  # a watcher's session
        watchers: set[Conn] | None = None  # a recorder's session, after its hello
        ingest = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data if self.buf else data
            if not self.upgraded:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self.buf = buf
                    return
                self._upgrade(buf[:end].decode("latin-1").split("\r\n"))
                buf = buf[end + 4:]
            pos, size = 0, len(buf)
            while size - pos >= 2:
                b0, n, head = buf[pos], buf[pos + 1] & 0x7F, pos + 2
                if n == 126:
                    if size - head < 2:
                        break
                    n, head = struct.unpack_from("!H", buf, head)[0], head + 2
                elif n == 127:
                    if size - head < 8:
                        break
                    n, head = struct.unpack_from("!Q", buf, head)[0], head + 8
                if size - head < 4 + n:
                    break
                payload = _websocket_mask(buf[head:head + 4], buf[head + 4:head + 4 + n])
                pos = head + 4 + n
                if b0 & 0x0F == 8:  # close: answer and go
                    self.transport.write(frame(b"", 8))
                    self.transport.close()
                    return
                if b0 & 0x0F == 1:
                    self._message(payload)
            self.buf = buf[pos:]

        def _upgrade(self, lines: list[str]) -> None:
            path = lines[0].split()[1]
            key = next(h.split(":", 1)[1].strip() for h in lines[1:]
                       if h.lower().startswith("sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key.encode() + guid).digest()).decode()
            self.transport.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            self.upgraded = True
            if path.startswith("/watch/"):
                self.channel = channels.setdefault(path[len("/watch/"):], set())
                self.channel.add(self)
                self.transport.write(frame(b'{"type":"caughtup"}'))
            else:
                self.ingest = path == "/ingest"

        def _message(self, payload: bytes) -> None:
            if not self.ingest:
                return  # a viewer's pings: no clock here
            if self.watchers is None:  # the hello
                self.watchers = channels.setdefault(json.loads(payload)["sessionId"], set())
                self.transport.write(frame(b'{"type":"welcome","protocol":2,"ackedSeq":0,"resume":"-"}'))
                return
            out = frame(payload)
            for w in tuple(self.watchers):
                w.transport.write(out)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.channel is not None:
                self.channel.discard(self)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", 0)
        print(f"RELAY {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def clock_offset(a: Page, b: Page, rounds: int = 15) -> float:
    """Clock of page b minus clock of page a (ms), from the probe with the smallest round trip."""
    expr = "performance.timeOrigin + performance.now()"
    best = (float("inf"), 0.0)
    for _ in range(rounds):
        t1 = a.evaluate(expr)
        tb = b.evaluate(expr)
        t2 = a.evaluate(expr)
        best = min(best, (t2 - t1, tb - (t1 + t2) / 2))
    return best[1]


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure both paths side by side; print and return the figures."""
    from playwright.sync_api import sync_playwright

    if not PLAYER.exists():
        print(f"skipping browser latency: {PLAYER} is not built (the viewer build makes it)")
        return {"skipped": "player.html missing"}
    relay = BareRelay().start()
    relay_ws = relay.ws
    sid = f"browser-lat-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="streamdom-blat-") as tmp:
        server = ServerProcess(Path(tmp) / "data", "--log-level", "WARNING").start()
        filler = "".join(f"<li>row {i}: some ordinary page content</li>" for i in range(args.rows))
        pages = PageServer({
            "/recorder": RECORDER_PAGE % {"server": server.http, "relay": relay_ws,
                                          "period": args.period, "filler": filler},
            "/floor": FLOOR_VIEWER_PAGE % {"relay": relay_ws},
        })
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + args.chrome_arg)
                ctx = browser.new_context(viewport={"width": 1000, "height": 700})
                rec = ctx.new_page()
                rec.goto(f"{pages.http}/recorder?session={sid}")
                rec.wait_for_function("window.StreamDOM && StreamDOM.status().connected && "
                                      "window.bench")
                floor = ctx.new_page()
                floor.goto(f"{pages.http}/floor")
                player = ctx.new_page()
                player.goto(f"{server.http}/sessions/{sid}")
                player.wait_for_selector(".replayer-wrapper iframe", state="attached", timeout=30000)
                player.wait_for_function(
                    "(() => { const f = document.querySelector('.replayer-wrapper iframe');"
                    " return f && f.contentDocument && f.contentDocument.getElementById('t'); })()")
                player.evaluate(PLAYER_PROBE)
                rec.wait_for_function("true")
                floor.wait_for_function("true")
                off_player = clock_offset(rec, player)
                off_floor = clock_offset(rec, floor)
                rec.evaluate("bench.start(); 0")
                t_end = time.monotonic() + args.duration
                while time.monotonic() < t_end:
                    time.sleep(0.5)
                rec.evaluate("bench.stop(); 0")
                time.sleep(1.0)
                sent = {int(k): v for k, v in rec.evaluate("bench.sent").items()}
                got_p = {int(k): v for k, v in player.evaluate("bench.got").items()}
                got_f = {int(k): v for k, v in floor.evaluate("bench.got").items()}
                latency_text = player.evaluate(
                    "(document.querySelector('[data-testid=latency]') || {}).textContent || ''")
                installs = player.evaluate("bench.installs")
                browser.close()
        finally:
            pages.close()
            server.stop()
            relay.stop()
    warm = args.skip  # the first ticks pay for connection warm-up in both paths
    ticks = sorted(n for n in sent if n > warm)
    lat_p = [got_p[n] - off_player - sent[n] for n in ticks if n in got_p]
    lat_f = [got_f[n] - off_floor - sent[n] for n in ticks if n in got_f]
    both = [n for n in ticks if n in got_p and n in got_f]
    pp, pf = percentiles(lat_p), percentiles(lat_f)
    ratio = pp["p50"] / pf["p50"] if pf["p50"] > 0 else float("inf")
    paired = [(got_p[n] - off_player) - (got_f[n] - off_floor) for n in both]
    print(f"\nbrowser to browser, {len(ticks)} ticks every ~{args.period} ms over {args.duration:g} s "
          f"(page clock offsets: player {off_player:+.2f} ms, floor {off_floor:+.2f} ms)")
    print(f"  StreamDOM (rrweb record -> server -> player iframe)  {fmt_pct(pp)}")
    print(f"  floor     (bare WebSocket relay -> DOM node)          {fmt_pct(pf)}")
    print(f"  p50 ratio {ratio:.2f}x (target <= {TARGET_RATIO:g}x: "
          f"{'ok' if ratio <= TARGET_RATIO else 'MISSED'}); max {pp['max']:.2f} ms "
          f"(target never above {TARGET_MAX_MS:g} ms: {'ok' if pp['max'] <= TARGET_MAX_MS else 'MISSED'}); "
          f"p99 {pp['p99']:.2f} ms")
    if paired:
        print(f"  StreamDOM minus floor on the same tick: median {median(paired):.2f} ms")
    missing = len(ticks) - len(lat_p)
    if missing:
        print(f"  {missing} ticks never showed in the player")
    print(f"  player's own latency readout at the end: {latency_text.strip()!r}; "
          f"iframe observer installs: {installs}")
    return {"machine": machine_note(), "ticks": len(ticks), "period_ms": args.period,
            "streamdom_ms": pp, "floor_ms": pf, "p50_ratio": ratio,
            "paired_diff_median_ms": median(paired) if paired else None,
            "missing_in_player": missing, "player_latency_text": latency_text,
            "clock_offsets_ms": {"player": off_player, "floor": off_floor}}


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of ticks (default %(default)s)")
    ap.add_argument("--period", type=int, default=100,
                    help="mean ms between ticks, jittered +-50%% (default %(default)s)")
    ap.add_argument("--skip", type=int, default=5, help="ignore the first ticks (default %(default)s)")
    ap.add_argument("--rows", type=int, default=200,
                    help="filler list rows in the recorder page (DOM size, default %(default)s)")
    ap.add_argument("--chrome-arg", action="append", default=[],
                    help="extra Chromium flag (repeatable)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--relay-server", nargs="?", const="tornado", choices=("tornado", "asyncio"),
                    help=argparse.SUPPRESS)
    return ap


def default_args() -> argparse.Namespace:
    """Defaults, for running from latency.py --browser."""
    return build_parser().parse_args([])


def main() -> None:
    """Entry point."""
    args = build_parser().parse_args()
    if args.relay_server:
        (protocol_relay_server if args.relay_server == "asyncio" else relay_server)()
        return
    print(f"machine: {machine_note()}")
    out = run(args)
    write_json(args.json, out)
    if isinstance(out, dict) and out.get("skipped"):
        print(json.dumps(out))


if __name__ == "__main__":
    main()
