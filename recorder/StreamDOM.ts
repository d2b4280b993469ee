// StreamDOM recorder: rrweb events streamed live over one WebSocket (see docs/PROTOCOL.md).
// Module-level names are shortened by the minifier, so they are written out in full here.
import { record } from '@rrweb/record';
import type { EventType, eventWithTime } from '@rrweb/types';

type RecOpts = Omit<NonNullable<Parameters<typeof record>[0]>, 'emit'>;
/** Every other rrweb record() option (blockClass, blockSelector, maskTextSelector, sampling, ...) is passed through. */
export type StreamDOMOptions = RecOpts & {
  sessionId: string;
  endpoint?: string | string[]; // ws(s)://host/ingest; several (cluster nodes): tried in turn after a drop
  key?: string; // write key, sent as ?key=
  token?: string; // ingest token minted by the app's backend (when the server has --ingest-secret)
  unmaskInputSelector?: string; // inputs matching (or inside) this are recorded in clear (never passwords)
  maxBufferBytes?: number; // bound of the unacknowledged resend buffer
  maxBufferEvents?: number;
  /** 'strict': all text of the page masked as well as inputs, and the messages of errors and console calls (README, "Privacy presets"). */
  privacy?: 'default' | 'strict';
  recordErrors?: boolean; // uncaught errors and unhandled rejections (default true)
  recordConsole?: boolean; // console.error and console.warn (default true)
  recordNetwork?: boolean; // fetch and XMLHttpRequest: method, URL, status, duration; never bodies (default true)
  networkQuery?: boolean; // keep query strings in recorded request URLs (default false)
};
/** An event not yet acknowledged by the server. */
type Unacked = { seq: number; type: EventType; json: string };
/** One NTP-style clock sample: [round trip, server clock − our clock] (ms). */
type ClockSample = [rtt: number, offset: number];

const wallNow = Date.now; // captured at load like rrweb's own timestamp clock
const perfNow = () => performance.now();
const round1 = (x: number) => Math.round(x * 10) / 10;
const send = (data: string) => { try { socket!.send(data) } catch {} };
const eventsFrame = (firstSeq: number, jsons: string[]) => '{"type":"events","seq":' + firstSeq + ',"events":[' + jsons.join(',') + ']}';

/** ws(s)://<host of url>/ingest */
export const ingestUrl = (url = location.href) => {
  const u = new URL(url, location.href);
  return (u.protocol == 'https:' ? 'wss://' : 'ws://') + u.host + '/ingest';
};

let options: StreamDOMOptions | null = null; // while recording
let sessionId = '', streamId = '';
let resumeSecret = ''; // from our stream's first welcome: reopens it after a drop (docs/PROTOCOL.md)
let socket: WebSocket | null = null;
let welcomed = false; // the current socket got its welcome: live events go out at once
let seq = 0; // last seq given to an event
let ackedSeq = 0; // highest seq the server holds durably
let unackedBytes = 0; // JSON characters in `unacked`
let retries = 0; // reconnect attempts since the last welcome (backoff exponent)
let endpointTurn = 0; // which of several endpoints the next connection uses
let ownSnapshotSeq = 0; // seq of the fresh full snapshot trimBuffer() took itself
let maxBytes = 0, maxEvents = 0; // bounds of `unacked`
let unacked: Unacked[] = []; // resend buffer, in seq order
let stopRecording: (() => void) | undefined;
let reconnectTimer: ReturnType<typeof setTimeout> | undefined, pingTimer: typeof reconnectTimer;
let clockSamples: ClockSample[] = [], bestClock: ClockSample | undefined;
let pendingPings: Record<number, number> = {}; // ping t0 -> performance.now() when sent
let trimming = false, hooked = false;
let gapFrom = 0, gapCount = 0, gapReportSeq = 0; // the last gap reported, and the seq it was reported at
let welcomes = 0; // a reconnect may meet a restarted server whose memory lost our snapshot
let batch: string[] = [], batchSeq = 0, batchBytes = 0; // live events of the current task, from seq batchSeq
let gone = false; // the page was hidden (pagehide) and said goodbye: no reconnect until it shows again

// One stream per browser tab, across its page loads: the stream id, its resume secret and the
// last seq used live in sessionStorage (per tab). `o` marks the tab's page as open: a page that
// finds it set is a duplicated tab (sessionStorage is copied) or follows a crash, and starts a
// new stream, so two pages never number events of one stream.
const tabKey = () => 'streamdom:' + sessionId;
const saveTab = (o: number) => { try { sessionStorage.setItem(tabKey(), JSON.stringify({ s: streamId, r: resumeSecret, q: seq, o })) } catch {} };

function dropAcked(upTo: number) { // everything <= upTo is durable on the server
  if (upTo > ackedSeq) ackedSeq = upTo;
  let i = 0;
  while (i < unacked.length && unacked[i].seq <= upTo) unackedBytes -= unacked[i++].json.length;
  unacked.splice(0, i);
}

function resendUnacked() { // batches of consecutive seqs, <= 100 events / ~256 KB
  let jsons: string[] = [], first = 0, size = 0, prev = 0;
  for (const x of unacked) {
    if (jsons.length && (x.seq != prev + 1 || jsons.length >= 100 || size + x.json.length > 262144)) {
      send(eventsFrame(first, jsons));
      jsons = [];
      size = 0;
    }
    if (!jsons.length) first = x.seq;
    jsons.push(x.json);
    size += x.json.length;
    prev = x.seq;
  }
  if (jsons.length) send(eventsFrame(first, jsons));
}

/** A custom event (docs/PROTOCOL.md, "Recorder events"), while recording. */
const custom = (tag: string, payload: object) => { try { if (stopRecording) record.addCustomEvent('streamdom-' + tag, payload) } catch {} };
const reportGap = (droppedFrom: number, droppedTo: number, count: number) => custom('gap', { droppedFrom, droppedTo, count });

let identity: object | undefined, metadata: object | undefined; // given before init: emitted once recording starts

const cut = (x: unknown, n: number) => String(x == null ? '' : x).slice(0, n);
// Messages and stacks of errors and console calls: short, and masked like text under privacy 'strict'.
const described = (message: unknown, stack: unknown) => ({
  message: cut(message, 1024).replace(options!.privacy == 'strict' ? /\S/g : /$^/, '*'),
  stack: cut(stack, 2048),
});
let reporting = false; // a console call made while reporting one (ours, or a console hook's) is not reported again

function hookErrors() {
  addEventListener('error', (e) => {
    if (options && options.recordErrors !== false && e instanceof ErrorEvent) custom('error', { source: 'error', ...described(e.message, e.error && e.error.stack) });
  });
  addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    if (options && options.recordErrors !== false) custom('error', { source: 'rejection', ...described(r && r.message || r, r && r.stack) });
  });
  for (const level of ['error', 'warn'] as const) {
    const original = console[level];
    console[level] = function (...args: unknown[]) {
      original.apply(this, args);
      if (!options || options.recordConsole === false || reporting) return;
      reporting = true;
      try {
        const text = args.map((a) => { try { return a instanceof Error ? a.message : typeof a == 'object' ? JSON.stringify(a) : String(a) } catch { return String(a) } }).join(' ');
        const err = args.find((a) => a instanceof Error) as Error | undefined;
        custom('console', { level, ...described(text, (err || Error()).stack) });
      } finally {
        reporting = false;
      }
    };
  }
}

// Requests: method, URL (no query or fragment unless networkQuery, never credentials), status
// (0: failed), duration. Never headers or bodies.
function network(method: unknown, url: unknown, status: number, t0: number, initiator: string) {
  const o = options;
  if (!o || o.recordNetwork === false) return;
  try {
    const u = new URL(String(url), location.href);
    if (!o.networkQuery) u.search = '';
    u.hash = u.username = u.password = '';
    custom('network', { method: cut(method || 'GET', 16).toUpperCase(), url: cut(u.href, 1024), status, duration: Math.round(perfNow() - t0), initiator });
  } catch {}
}

function hookNetwork() {
  const f = window.fetch;
  if (f) window.fetch = function (input: RequestInfo | URL, init?: RequestInit) {
    const t0 = perfNow(), method = (init && init.method) || (input as Request).method, url = (input as Request).url || input;
    const p = f.apply(this, arguments as any);
    p.then((r) => network(method, url, r.status, t0, 'fetch'), () => network(method, url, 0, t0, 'fetch'));
    return p;
  };
  const x = XMLHttpRequest.prototype, open = x.open, xsend = x.send;
  x.open = function (this: any, method: string, url: string | URL) {
    this._sd = [method, url];
    return open.apply(this, arguments as any);
  };
  x.send = function (this: any) {
    const r = this._sd, t0 = perfNow();
    if (r) this.addEventListener('loadend', () => network(r[0], r[1], this.status, t0, 'xhr'));
    return xsend.apply(this, arguments as any);
  };
}

/** Who the user is: indexed with the session (README, "Session index"). */
function identify(userId: string, traits?: object) {
  identity = { userId: String(userId).slice(0, 128), traits: traits || {} };
  custom('identify', identity);
}

/** Fields about the session (build, experiment, ...), merged over earlier ones. */
function setMetadata(fields: object) {
  metadata = { ...metadata, ...fields };
  custom('metadata', { fields });
}

// Attributes that show text on the page: masked too under privacy 'strict'.
const textAttrs = /^(placeholder|title|alt|aria-label|aria-description|value|label)$/;
const maskAttrs = (a: any) => { for (const k in a) if (textAttrs.test(k) && typeof a[k] == 'string') a[k] = a[k].replace(/\S/g, '*') };
const maskNode = (n: any) => { if (n) { maskAttrs(n.attributes); (n.childNodes || []).forEach(maskNode) } };

// What a click hit, for the event list and the search: the text of the clicked control (or
// element), unless privacy is 'strict' or the element is masked, blocked or a form field.
function clickText(id: number) {
  const o = options!, n: any = record.mirror.getNode(id), el: Element | null = n && (n.closest ? n : n.parentElement);
  const hidden = ['input,textarea,select,[contenteditable]', o.maskTextSelector, o.blockSelector, typeof o.maskTextClass == 'string' && '.' + o.maskTextClass,
    typeof o.blockClass == 'string' && '.' + o.blockClass, '.rr-mask,.rr-block'].filter(Boolean).join(',');
  if (!el || o.privacy == 'strict' || el.closest(hidden)) return;
  return cut((el.closest('a,button,label,summary,option,[role=button],[role=link],[role=tab],[role=menuitem]') || el).textContent, 400).trim().replace(/\s+/g, ' ').slice(0, 100) || undefined;
}

/** rrweb's emit callback: number the event, keep it until acknowledged, send it now if welcomed. */
function onRecorded(e: eventWithTime) {
  try {
    const d: any = e.data;
    if (e.type == (3 satisfies EventType.IncrementalSnapshot)) {
      if (d.source == 2 && d.type == 2) d.text = clickText(d.id); // a click
      else if (d.source == 0 && options!.privacy == 'strict') d.adds.forEach((a: any) => maskNode(a.node)), d.attributes.forEach((a: any) => maskAttrs(a.attributes));
    } else if (e.type == (2 satisfies EventType.FullSnapshot) && options!.privacy == 'strict') maskNode(d.node);
    const json = JSON.stringify(e), x = { seq: ++seq, type: e.type, json };
    unacked.push(x);
    unackedBytes += json.length;
    if (welcomed) {
      // Live: everything rrweb emits before the current task's microtasks run out (a mutation
      // and the input and click that caused it; a checkout's Meta + FullSnapshot) leaves as
      // one frame, at the end of that stretch: no timer, no added latency, fewer frames to
      // parse, relay and apply on every hop.
      if (batch.length && batchBytes + json.length > 262144) sendBatch(); // frames stay well under the server's cap
      if (!batch.length) batchSeq = seq, batchBytes = 0, queueMicrotask(sendBatch);
      batch.push(json);
      batchBytes += json.length;
    }
    trimBuffer();
  } catch {}
}

function sendBatch() {
  const jsons = batch;
  batch = [];
  if (welcomed && jsons.length) send(eventsFrame(batchSeq, jsons));
}

// Over the bound (long outage): drop the oldest whole segments (each starts at a Meta event,
// i.e. a full snapshot); with no later snapshot to cut at, take a fresh one first. Report the gap.
function trimBuffer() {
  const over = (factor: number) => unackedBytes > maxBytes * factor || unacked.length > maxEvents * factor;
  if (trimming || !over(1)) return;
  trimming = true;
  try {
    // rrweb's EventType.Meta as a checked literal: @rrweb/record does not export its copy of the
    // enum, and importing @rrweb/types' copy would add ~100 B to the bundle.
    const nextSegment = () => unacked.findIndex((x, i) => i > 0 && x.type == (4 satisfies EventType.Meta));
    if (nextSegment() < 0) {
      if (unacked[0].seq == ownSnapshotSeq && !over(2)) return; // starts at our own fresh snapshot: let a checkout come
      ownSnapshotSeq = seq + 1;
      record.takeFullSnapshot(true);
    }
    let from = unacked[0].seq, to = 0, count = 0, cut;
    while (over(1) && (cut = nextSegment()) > 0) for (const x of unacked.splice(0, cut)) unackedBytes -= x.json.length, count++, to = x.seq;
    if (!count) return;
    if (gapReportSeq && gapReportSeq <= to) from = gapFrom, count += gapCount; // our previous gap report was dropped too: merge
    reportGap(from, to, count);
    gapFrom = from, gapCount = count, gapReportSeq = seq;
  } finally {
    trimming = false;
  }
}

function connect() {
  const opts = options!;
  const endpoints = ([] as string[]).concat(opts.endpoint || ingestUrl());
  let url = endpoints[endpointTurn % endpoints.length];
  if (opts.key) url += (url.includes('?') ? '&' : '?') + 'key=' + encodeURIComponent(opts.key);
  const s = (socket = new WebSocket(url));
  pendingPings = {};
  s.onopen = () => {
    if (s == socket) send(JSON.stringify({
      type: 'hello', protocol: 2, sessionId: opts.sessionId, streamId, url: location.href, userAgent: navigator.userAgent,
      token: opts.token, resume: resumeSecret || undefined,
    }));
  };
  s.onmessage = (ev) => {
    if (s == socket) try { onServerMessage(JSON.parse(ev.data)) } catch {}
  };
  s.onclose = (ev) => {
    if (s == socket) try { onClosed(ev.code, ev.reason) } catch {}
  };
}

function onServerMessage(m: any) {
  if (m.type == 'ack') dropAcked(m.seq);
  else if (m.type == 'welcome') {
    welcomed = true;
    batch = []; // what it holds is in `unacked`, resent below
    if (typeof m.resume == 'string') resumeSecret = m.resume, saveTab(1);
    retries = 0;
    dropAcked(m.ackedSeq);
    resendUnacked();
    if (welcomes++ && stopRecording) record.takeFullSnapshot(true); // late viewers get a playable start
    schedulePing(0);
  } else if (m.type == 'pong') {
    const sentAt = pendingPings[m.t0];
    if (sentAt == null) return;
    delete pendingPings[m.t0];
    const d = perfNow() - sentAt, rtt = Math.max(0, d - (m.t2 - m.t1)), offset = (m.t1 - m.t0 + m.t2 - (m.t0 + d)) / 2;
    if (isNaN(rtt + offset)) return;
    clockSamples.push([rtt, offset]);
    if (clockSamples.length > 8) clockSamples.shift();
    const best = clockSamples.reduce((a, x) => (x[0] < a[0] ? x : a));
    if (best != bestClock) {
      bestClock = best;
      send(JSON.stringify({ type: 'clock', offset: round1(best[1]), rtt: round1(best[0]) }));
    }
  }
}

function schedulePing(n: number) { // NTP-style pings: 5 quick ones, then one every 10 s
  pingTimer = setTimeout(() => {
    if (!welcomed) return;
    const t0 = wallNow();
    pendingPings[t0] = perfNow();
    send(JSON.stringify({ type: 'ping', t0 }));
    schedulePing(n + 1);
  }, n < 5 ? (n && 50) : 1e4);
}

const newStreamId = () => (crypto.randomUUID && crypto.randomUUID()) || Math.random().toString(36).slice(2) + wallNow().toString(36);

function dropEvent(x: Unacked | undefined) { // one event the server cannot take: recording goes on
  if (!x) return;
  unacked.splice(unacked.indexOf(x), 1);
  unackedBytes -= x.json.length;
  reportGap(x.seq, x.seq, 1);
}

function onClosed(code: number, reason: string) {
  welcomed = false;
  socket = null;
  clearTimeout(pingTimer);
  if (!options || gone) return; // stopped, or the page is going away
  if (code == 4401 || code == 4403) { // no (valid) token, or an origin the server refuses
    console.warn('StreamDOM: refused by server', code, reason);
    return halt();
  }
  if (code == 4400) { // the event the reason names ("seq N: ..."), else the oldest we hold
    const m = /^seq (\d+):/.exec(reason || ''), n = m ? +m[1] : 0;
    dropEvent(unacked.find((x) => x.seq == n) || unacked[0]);
  }
  if (code == 4409) { // this stream cannot go on (taken, or our secret unknown): go on as a new one
    streamId = newStreamId();
    resumeSecret = '';
    saveTab(1);
  }
  if (code == 1009 && unacked.length) dropEvent(unacked.reduce((a, b) => (b.json.length > a.json.length ? b : a))); // the oversized one
  endpointTurn++; // the next endpoint, if there are several: this one's node may be gone
  const slow = code == 4429 || code == 4507 || code == 4408;
  if (slow) retries = Math.max(retries, 6);
  reconnectTimer = setTimeout(() => { try { if (options && !socket) connect() } catch {} }, (slow ? 2000 : 0) + Math.random() * Math.min(1e4, 250 * 2 ** Math.min(retries++, 6)));
}

function halt() {
  try { if (stopRecording) stopRecording() } catch {}
  stopRecording = undefined;
  options = null;
  clearTimeout(reconnectTimer);
  clearTimeout(pingTimer);
}

function init(opts: StreamDOMOptions) {
  try {
    if (options || !opts) return;
    if (typeof opts.sessionId != 'string' || !/^[\w.:@-]{1,128}$/.test(opts.sessionId)) return console.warn('StreamDOM: invalid sessionId');
    const { sessionId: id, endpoint, key, token, unmaskInputSelector: unmask, maxBufferBytes, maxBufferEvents,
      privacy, recordErrors, recordConsole, recordNetwork, networkQuery, ...rest } = opts;
    options = opts;
    sessionId = id;
    streamId = newStreamId();
    resumeSecret = '';
    seq = ackedSeq = unackedBytes = retries = ownSnapshotSeq = gapReportSeq = 0;
    gone = false;
    try {
      const t = JSON.parse(sessionStorage.getItem(tabKey())!);
      if (t && !t.o && t.s) streamId = t.s, resumeSecret = t.r || '', seq = ackedSeq = +t.q || 0; // this tab's stream goes on
    } catch {}
    saveTab(1);
    if (!hooked) {
      hooked = true;
      addEventListener('pagehide', bye);
      hookErrors();
      hookNetwork();
      addEventListener('pageshow', (e) => { if (e.persisted && options) gone = false, saveTab(1), socket || connect() }); // back from the bfcache
    }
    unacked = [];
    clockSamples = [];
    bestClock = undefined;
    maxBytes = maxBufferBytes || 16e6;
    maxEvents = maxBufferEvents || 5e4;
    const maskFn = rest.maskInputFn, stars = (t: string) => '*'.repeat(t.length);
    connect();
    stopRecording = record({
      errorHandler: () => true, // rrweb errors never reach the host page
      checkoutEveryNms: 6e4,
      ...rest,
      ...(privacy == 'strict' ? { maskTextSelector: '*' } : {}), // every text node
      maskAllInputs: privacy == 'strict' || (rest.maskAllInputs ?? true),
      maskInputOptions: { ...rest.maskInputOptions, password: true },
      maskInputFn: (t, el) =>
        (el as HTMLInputElement).type == 'password' || el.hasAttribute('data-rr-is-password') ? stars(t)
        : unmask && privacy != 'strict' && el.closest(unmask) ? t : maskFn ? maskFn(t, el) : stars(t),
      sampling: { mousemove: 50, mousemoveCallback: 100, ...rest.sampling },
      emit: onRecorded,
    });
    if (identity) custom('identify', identity); // identified before init
    if (metadata) custom('metadata', { fields: metadata });
  } catch {
    stop();
  }
}

// The page goes away (tab closed, navigation, bfcache): send what this task recorded and a
// goodbye, so the server ends the session now instead of after its grace period for drops.
function bye() {
  if (!options || gone) return;
  gone = true;
  sendBatch();
  send('{"type":"goodbye"}');
  saveTab(0);
}

function stop(): Promise<void> {
  return new Promise((res) => {
    const s = socket, end = perfNow() + 1000;
    halt();
    if (!s) return res();
    const wait = () => { // until all is acknowledged (a pending welcome resends), the socket is gone, or 1 s
      if (unacked.length && s!.readyState < 2 && perfNow() < end) return setTimeout(wait, 20);
      if (socket == s) socket = null, welcomed = false, clearTimeout(pingTimer);
      try { s!.send('{"type":"goodbye"}'), s!.close(1000) } catch {}
      saveTab(0);
      res();
    };
    wait();
  });
}

const status = () => ({
  connected: welcomed, sessionId, streamId, lastSeq: seq, ackedSeq, buffered: unacked.length,
  offset: bestClock && bestClock[1], rtt: bestClock && bestClock[0],
});

export const StreamDOM = { init, stop, status, identify, setMetadata };
export const StreamDom = StreamDOM;
export default StreamDOM;
