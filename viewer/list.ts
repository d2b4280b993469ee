// Session list: GET /api/sessions, then kept current over WS /updates.
import { fetchJSON, httpClockSkew, sessionPath, wsURL } from './lib/api';
import { describeUserAgent, formatDuration, formatStart, h } from './lib/format';
import { ReconnectingSocket } from './lib/ws';
import { isObject, type SessionInfo, type UpdatesMessage } from './lib/types';

const PAGE = 100;
const DAY = 24 * 3600 * 1000;

const recent = new Map<string, SessionInfo>(); // live + last 24 h (server's default window)
const older = new Map<string, SessionInfo>(); // pages loaded with ?before=
const rows = new Map<string, { el: HTMLAnchorElement; sig: string }>();
let shown = PAGE;
let filter = '';
let loaded = false;
let olderCursor: number | null = null;
let renderQueued = false;

const $ = (id: string) => document.getElementById(id) as HTMLElement;
const listEl = $('list');
const offline = $('offline');

function serverNow(): number {
  return Date.now() + httpClockSkew;
}

function isValid(s: unknown): s is SessionInfo {
  return isObject(s) && typeof s.id === 'string';
}

const wsSeenAt = new Map<string, number>(); // when /updates last told us about a session

function upsert(s: SessionInfo): void {
  older.delete(s.id);
  recent.set(s.id, s);
}

/** Replaces the recent window; `since` (for HTTP results) keeps WS updates newer than the request. */
function replaceRecent(list: SessionInfo[], since: number | null): void {
  const keep = new Map<string, SessionInfo>();
  if (since !== null) for (const [id, t] of wsSeenAt) if (t > since && recent.has(id)) keep.set(id, recent.get(id) as SessionInfo);
  recent.clear();
  for (const s of list) if (isValid(s)) upsert(s);
  for (const s of keep.values()) upsert(s);
  loaded = true;
}

function durationOf(s: SessionInfo): number {
  return (s.live ? Math.max(serverNow(), s.last_event_at) : s.last_event_at) - s.started_at;
}

function sorted(): SessionInfo[] {
  const all = new Map(older);
  for (const [k, v] of recent) all.set(k, v);
  return [...all.values()].sort((a, b) => {
    if (a.live !== b.live) return a.live ? -1 : 1;
    if (a.live) return b.started_at - a.started_at || a.id.localeCompare(b.id);
    return b.last_event_at - a.last_event_at || a.id.localeCompare(b.id);
  });
}

function signature(s: SessionInfo): string {
  return [s.live, s.started_at, s.last_event_at, s.event_count, s.url, s.user_agent].join('\u0001');
}

function buildRow(s: SessionInfo): HTMLAnchorElement {
  const el = h('a', {
    class: 'session-row' + (s.live ? ' is-live' : ''),
    href: sessionPath(s.id),
    role: 'listitem',
    'data-session-id': s.id,
    'data-live': String(!!s.live),
  });
  const status = s.live
    ? h('span', { class: 'live-badge small' }, h('span', { class: 'live-dot' }), 'LIVE')
    : h('span', { class: 'ended-badge' }, 'ended');
  el.append(
    h('span', { class: 'c-status' }, status),
    h('span', { class: 'c-main' }, h('span', { class: 'sid mono' }, s.id), h('span', { class: 'url', title: s.url ?? '' }, s.url || '—')),
    h('span', { class: 'c-start', title: new Date(s.started_at).toLocaleString() }, formatStart(s.started_at)),
    h('span', { class: 'c-dur mono', 'data-dur': '' }, formatDuration(durationOf(s))),
    h('span', { class: 'c-events' }, `${s.event_count ?? 0} events`),
    h('span', { class: 'c-ua', title: s.user_agent ?? '' }, describeUserAgent(s.user_agent)),
  );
  return el;
}

function render(): void {
  renderQueued = false;
  const all = sorted();
  const f = filter;
  const matching = f ? all.filter((s) => s.id.toLowerCase().includes(f) || (s.url ?? '').toLowerCase().includes(f)) : all;
  const visible = matching.slice(0, shown);
  const keep = new Set<string>();
  let prev: Element | null = null;
  for (const s of visible) {
    keep.add(s.id);
    const sig = signature(s);
    let row = rows.get(s.id);
    if (!row || row.sig !== sig) {
      const el = buildRow(s);
      if (row) row.el.replaceWith(el);
      row = { el, sig };
      rows.set(s.id, row);
    }
    const want: Element | null = prev ? prev.nextElementSibling : listEl.firstElementChild;
    if (want !== row.el) listEl.insertBefore(row.el, want);
    prev = row.el;
  }
  for (const [id, row] of rows) {
    if (!keep.has(id)) {
      row.el.remove();
      rows.delete(id);
    }
  }
  $('load-more').hidden = matching.length <= shown;
  $('load-more').textContent = `Load more (${matching.length - shown} more)`;
  $('empty').hidden = !(loaded && all.length === 0);
  $('list-header').hidden = visible.length === 0;
  $('no-match').hidden = !(all.length > 0 && matching.length === 0);
  const live = all.filter((s) => s.live).length;
  $('count').textContent = all.length ? `${all.length}${live ? ` · ${live} live` : ''}` : '';
}

function scheduleRender(): void {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(render, 30);
}

/** Running duration of live rows, once a second. */
function tick(): void {
  for (const row of rows.values()) {
    if (row.el.dataset.live !== 'true') continue;
    const s = recent.get(row.el.dataset.sessionId ?? '');
    const dur = row.el.querySelector<HTMLElement>('[data-dur]');
    if (s && dur) dur.textContent = formatDuration(durationOf(s));
  }
}

function setOffline(down: boolean): void {
  offline.hidden = !down;
}

async function refetch(): Promise<void> {
  const since = performance.now();
  try {
    const { data } = await fetchJSON<{ sessions: SessionInfo[] }>('/api/sessions');
    replaceRecent(Array.isArray(data.sessions) ? data.sessions : [], since);
    scheduleRender();
  } catch {
    if (!socket.connected) setOffline(true);
  }
}

async function loadOlder(): Promise<void> {
  const btn = $('older') as HTMLButtonElement;
  const status = $('older-status');
  btn.disabled = true;
  status.textContent = 'Loading…';
  const before = olderCursor ?? serverNow() - DAY;
  try {
    const { data } = await fetchJSON<{ sessions: SessionInfo[] }>(`/api/sessions?before=${Math.floor(before)}&limit=${PAGE}`);
    const list = (Array.isArray(data.sessions) ? data.sessions : []).filter(isValid);
    let added = 0;
    for (const s of list) {
      if (!recent.has(s.id) && !older.has(s.id)) added++;
      if (!recent.has(s.id)) older.set(s.id, s);
    }
    const oldest = list.reduce((m, s) => Math.min(m, s.last_event_at), before);
    olderCursor = oldest;
    shown = Math.max(shown, recent.size + older.size);
    btn.textContent = 'Show older sessions';
    if (list.length < PAGE || added === 0) {
      btn.hidden = true;
      status.textContent = list.length || older.size ? 'No older sessions.' : 'No sessions older than 24 h.';
    } else {
      status.textContent = '';
    }
    scheduleRender();
  } catch {
    status.textContent = 'Could not load older sessions.';
  } finally {
    btn.disabled = false;
  }
}

const socket = new ReconnectingSocket(wsURL('/updates'), {
  onOpen(reconnect) {
    setOffline(false);
    if (reconnect) void refetch();
  },
  onMessage(raw) {
    if (!isObject(raw)) return;
    const msg = raw as unknown as UpdatesMessage;
    const now = performance.now();
    if (msg.type === 'sessions' && Array.isArray(msg.sessions)) {
      replaceRecent(msg.sessions, null);
      for (const s of msg.sessions) if (isValid(s)) wsSeenAt.set(s.id, now);
      scheduleRender();
    } else if (msg.type === 'session' && isValid(msg.session)) {
      wsSeenAt.set(msg.session.id, now);
      upsert(msg.session);
      scheduleRender();
    }
  },
  onDown() {
    setOffline(true);
  },
});

$('filter').addEventListener('input', (ev) => {
  filter = (ev.target as HTMLInputElement).value.trim().toLowerCase();
  shown = PAGE;
  render();
});
$('load-more').addEventListener('click', () => {
  shown += PAGE;
  render();
});
$('older').addEventListener('click', () => void loadOlder());
setInterval(tick, 1000);
void refetch();
