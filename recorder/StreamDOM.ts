// StreamDOM recorder: rrweb events streamed live over one WebSocket (see docs/PROTOCOL.md).
import { record } from '@rrweb/record';

type RecOpts = Omit<NonNullable<Parameters<typeof record>[0]>, 'emit'>;
/** Every other rrweb record() option (blockClass, blockSelector, maskTextSelector, sampling, ...) is passed through. */
export type StreamDOMOptions = RecOpts & {
  sessionId: string;
  endpoint?: string; // ws(s)://host/ingest
  key?: string; // write key, sent as ?key=
  unmaskInputSelector?: string; // inputs matching (or inside) this are recorded in clear (never passwords)
  maxBufferBytes?: number; // bound of the unacknowledged resend buffer
  maxBufferEvents?: number;
};
type Ent = { s: number; t: number; j: string }; // seq, rrweb event type, event JSON

const now = Date.now; // captured at load like rrweb's own timestamp clock
const perf = () => performance.now();
const r1 = (x: number) => Math.round(x * 10) / 10;
const tx = (d: string) => { try { ws!.send(d) } catch {} };
const frame = (s: number, js: string[]) => '{"type":"events","seq":' + s + ',"events":[' + js.join(',') + ']}';

/** ws(s)://<host of url>/ingest */
export const ingestUrl = (url = location.href) => {
  const u = new URL(url, location.href);
  return (u.protocol == 'https:' ? 'wss://' : 'ws://') + u.host + '/ingest';
};

let o: StreamDOMOptions | null = null; // options while recording
let sess = '', sid = '';
let ws: WebSocket | null = null;
let ok = false; // current socket is welcomed
let seq = 0, acked = 0, bytes = 0, tries = 0, keep = 0, maxB = 0, maxN = 0;
let buf: Ent[] = [];
let stopRec: (() => void) | undefined;
let timer: ReturnType<typeof setTimeout> | undefined, clk: typeof timer;
let samples: number[][] = [], best: number[] | undefined; // [rtt, offset]
let pend: Record<number, number> = {}; // ping t0 -> performance.now()
let trimming = false, gapFrom = 0, gapN = 0, gapSeq = 0;
let welcomes = 0; // a reconnect may meet a restarted server whose memory lost our snapshot

function drop(n: number) { // everything <= n is durable on the server
  if (n > acked) acked = n;
  let i = 0;
  while (i < buf.length && buf[i].s <= n) bytes -= buf[i++].j.length;
  buf.splice(0, i);
}

function flush() { // resend the buffer: batches of consecutive seqs, <= 100 events / ~256 KB
  let js: string[] = [], first = 0, size = 0, prev = 0;
  for (const x of buf) {
    if (js.length && (x.s != prev + 1 || js.length >= 100 || size + x.j.length > 262144)) {
      tx(frame(first, js));
      js = [];
      size = 0;
    }
    if (!js.length) first = x.s;
    js.push(x.j);
    size += x.j.length;
    prev = x.s;
  }
  if (js.length) tx(frame(first, js));
}

const gap = (droppedFrom: number, droppedTo: number, count: number) => {
  try { record.addCustomEvent('streamdom-gap', { droppedFrom, droppedTo, count }) } catch {}
};

function emit(e: unknown) {
  try {
    const j = JSON.stringify(e), x = { s: ++seq, t: (e as { type: number }).type, j };
    buf.push(x);
    bytes += j.length;
    if (ok) tx(frame(x.s, [j])); // live: one event per frame, right now
    trim();
  } catch {}
}

// Over the bound (long outage): drop the oldest whole segments (each starts at a Meta event,
// i.e. a full snapshot); with no later snapshot to cut at, take a fresh one first. Report the gap.
function trim() {
  const over = (k: number) => bytes > maxB * k || buf.length > maxN * k;
  if (trimming || !over(1)) return;
  trimming = true;
  try {
    const cut = () => buf.findIndex((x, i) => i > 0 && x.t == 4);
    if (cut() < 0) {
      if (buf[0].s == keep && !over(2)) return; // starts at our own fresh snapshot: let a checkout come
      keep = seq + 1;
      record.takeFullSnapshot(true);
    }
    let from = buf[0].s, to = 0, n = 0, j;
    while (over(1) && (j = cut()) > 0) for (const x of buf.splice(0, j)) bytes -= x.j.length, n++, to = x.s;
    if (!n) return;
    if (gapSeq && gapSeq <= to) from = gapFrom, n += gapN; // our previous gap report was dropped too: merge
    gap(from, to, n);
    gapFrom = from, gapN = n, gapSeq = seq;
  } finally {
    trimming = false;
  }
}

function connect() {
  const c = o!;
  let url = c.endpoint || ingestUrl();
  if (c.key) url += (url.includes('?') ? '&' : '?') + 'key=' + encodeURIComponent(c.key);
  const s = (ws = new WebSocket(url));
  pend = {};
  s.onopen = () => {
    if (s == ws) tx(JSON.stringify({ type: 'hello', sessionId: c.sessionId, streamId: sid, url: location.href, userAgent: navigator.userAgent }));
  };
  s.onmessage = (ev) => {
    if (s == ws) try { onMsg(JSON.parse(ev.data)) } catch {}
  };
  s.onclose = (ev) => {
    if (s == ws) try { closed(ev.code) } catch {}
  };
}

function onMsg(m: any) {
  if (m.type == 'ack') drop(m.seq);
  else if (m.type == 'welcome') {
    ok = true;
    tries = 0;
    drop(m.ackedSeq);
    flush();
    if (welcomes++ && stopRec) record.takeFullSnapshot(true); // late viewers get a playable start
    sync(0);
  } else if (m.type == 'pong') {
    const p0 = pend[m.t0];
    if (p0 == null) return;
    delete pend[m.t0];
    const d = perf() - p0, rtt = Math.max(0, d - (m.t2 - m.t1)), off = (m.t1 - m.t0 + m.t2 - (m.t0 + d)) / 2;
    if (isNaN(rtt + off)) return;
    samples.push([rtt, off]);
    if (samples.length > 8) samples.shift();
    const b = samples.reduce((a, x) => (x[0] < a[0] ? x : a));
    if (b != best) {
      best = b;
      tx(JSON.stringify({ type: 'clock', offset: r1(b[1]), rtt: r1(b[0]) }));
    }
  }
}

function sync(k: number) { // NTP-style pings: 5 quick ones, then one every 10 s
  clk = setTimeout(() => {
    if (!ok) return;
    const t0 = now();
    pend[t0] = perf();
    tx(JSON.stringify({ type: 'ping', t0 }));
    sync(k + 1);
  }, k < 5 ? (k && 50) : 1e4);
}

function closed(code: number) {
  ok = false;
  ws = null;
  clearTimeout(clk);
  if (!o) return; // stopped
  if (code == 4401 || code == 4403 || code == 4400) {
    console.warn('StreamDOM: refused by server', code);
    return halt();
  }
  if (code == 1009 && buf.length) { // drop the oversized event
    const x = buf.reduce((a, b) => (b.j.length > a.j.length ? b : a));
    buf.splice(buf.indexOf(x), 1);
    bytes -= x.j.length;
    gap(x.s, x.s, 1);
  }
  const slow = code == 4429 || code == 4507 || code == 4408;
  if (slow) tries = Math.max(tries, 6);
  timer = setTimeout(() => { try { if (o && !ws) connect() } catch {} }, (slow ? 2000 : 0) + Math.random() * Math.min(1e4, 250 * 2 ** Math.min(tries++, 6)));
}

function halt() {
  try { stopRec?.() } catch {}
  stopRec = undefined;
  o = null;
  clearTimeout(timer);
  clearTimeout(clk);
}

function init(opts: StreamDOMOptions) {
  try {
    if (o || !opts) return;
    if (typeof opts.sessionId != 'string' || !/^[\w.:@-]{1,128}$/.test(opts.sessionId)) return console.warn('StreamDOM: invalid sessionId');
    const { sessionId, endpoint, key, unmaskInputSelector: um, maxBufferBytes, maxBufferEvents, ...rest } = opts;
    o = opts;
    sess = sessionId;
    sid = (crypto.randomUUID && crypto.randomUUID()) || Math.random().toString(36).slice(2) + now().toString(36);
    seq = acked = bytes = tries = keep = gapSeq = 0;
    buf = [];
    samples = [];
    best = undefined;
    maxB = maxBufferBytes || 16e6;
    maxN = maxBufferEvents || 5e4;
    const f = rest.maskInputFn, star = (t: string) => '*'.repeat(t.length);
    connect();
    stopRec = record({
      errorHandler: () => true, // rrweb errors never reach the host page
      checkoutEveryNms: 6e4,
      ...rest,
      maskAllInputs: rest.maskAllInputs ?? true,
      maskInputOptions: { ...rest.maskInputOptions, password: true },
      maskInputFn: (t, el) =>
        (el as HTMLInputElement).type == 'password' || el.hasAttribute('data-rr-is-password') ? star(t)
        : um && el.closest(um) ? t : f ? f(t, el) : star(t),
      sampling: { mousemove: 50, mousemoveCallback: 100, ...rest.sampling },
      emit,
    });
  } catch {
    stop();
  }
}

function stop(): Promise<void> {
  return new Promise((res) => {
    const s = ws, end = perf() + 1000;
    halt();
    if (!s) return res();
    const wait = () => { // until all is acknowledged (a pending welcome resends), the socket is gone, or 1 s
      if (buf.length && s!.readyState < 2 && perf() < end) return setTimeout(wait, 20);
      if (ws == s) ws = null, ok = false, clearTimeout(clk);
      try { s!.close(1000) } catch {}
      res();
    };
    wait();
  });
}

const status = () => ({
  connected: ok, sessionId: sess, streamId: sid, lastSeq: seq, ackedSeq: acked, buffered: buf.length,
  offset: best && best[1], rtt: best && best[0],
});

export const StreamDOM = { init, stop, status };
export const StreamDom = StreamDOM;
export default StreamDOM;
