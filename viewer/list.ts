// Session list (/): one page of GET /api/sessions matches at a time, searched on the server,
// the filters in the page's URL, kept current over WS /updates.
import { HttpError, fetchJSON, httpClockSkew, sessionPath, wsURL } from './lib/api';
import { describeUserAgent, formatDuration, formatStart, h } from './lib/format';
import { ReconnectingSocket } from './lib/ws';
import { durationOf, isObject, type SessionInfo, type SessionPage, type UpdatesMessage } from './lib/types';
import { RANGES, apiPath, emptyFilters, fromQuery, isFiltered, toQuery, type Filters, type Range } from './lib/search';

const PAGE = 50;

const $ = (id: string) => document.getElementById(id) as HTMLElement;
const listEl = $('list');
const filterBox = $('filter') as HTMLInputElement;
const panel = $('filters') as HTMLFormElement;

let { filters, page } = fromQuery(location.search);
let shown: SessionInfo[] = [];
let total = 0;
let loaded = false;
const rows = new Map<string, { el: HTMLElement; sig: string }>();
const expanded = new Set<string>(); // rows whose traits and metadata are open

function serverNow(): number {
  return Date.now() + httpClockSkew;
}

// ---- rows ------------------------------------------------------------------------------------

function browserOf(s: SessionInfo): string {
  if (s.browser) return s.os ? `${s.browser} · ${s.os}` : s.browser;
  return describeUserAgent(s.user_agent); // a server without the browser field
}

/** The URL, whole in the DOM; on wide screens cut in the middle (host … end), never after the host. */
function urlCell(url: string): HTMLElement {
  const el = h('span', { class: 'url', title: url, 'data-testid': 'url' });
  if (!url) {
    el.textContent = '—';
    return el;
  }
  const cut = Math.max(0, url.length - 28);
  el.append(h('span', { class: 'u-head' }, url.slice(0, cut)), h('span', { class: 'u-tail' }, url.slice(cut)));
  return el;
}

/** A figure of the row, highlighted above `usual` (0 for counts of problems, 1 for tabs); its
 * label (singular, plural) shows where there is no column header. */
function num(cls: string, n: number | undefined, label: [string, string], title: string, usual = 0): HTMLElement {
  const v = n ?? 0;
  return h('span', { class: `c-num ${cls}${v > usual ? ' nonzero' : ''}`, title },
    h('span', { class: 'n' }, String(v)), h('span', { class: 'lbl' }, ' ' + label[v === 1 ? 0 : 1]));
}

function describe(obj: Record<string, unknown> | undefined): [string, string][] {
  if (!isObject(obj)) return [];
  return Object.entries(obj).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
}

function detail(s: SessionInfo): HTMLElement {
  const box = h('div', { class: 'row-detail', 'data-testid': 'row-detail' });
  for (const [name, entries] of [['Traits', describe(s.traits)], ['Metadata', describe(s.metadata)]] as const) {
    if (!entries.length) continue;
    const dl = h('dl', { class: 'kv' });
    for (const [k, v] of entries) dl.append(h('dt', {}, k), h('dd', {}, v));
    box.append(h('div', { class: 'kv-group' }, h('span', { class: 'kv-name' }, name), dl));
  }
  if (s.user_id) {
    const only = h('button', { class: 'link-btn', type: 'button', 'data-testid': 'only-user' }, `All sessions of ${s.user_id}`);
    only.addEventListener('click', () => apply({ ...emptyFilters(), user: s.user_id ?? '' }));
    box.append(only);
  }
  return box;
}

function buildRow(s: SessionInfo): HTMLElement {
  const el = h('div', {
    class: 'session-row' + (s.live ? ' is-live' : ''),
    role: 'listitem',
    'data-session-id': s.id,
    'data-live': String(!!s.live),
    'data-user-id': s.user_id ?? '',
    'data-tabs': String(s.tabs ?? 1),
  });
  const status = s.live
    ? h('span', { class: 'live-badge small' }, h('span', { class: 'live-dot' }), 'LIVE')
    : h('span', { class: 'ended-badge' }, 'ended');
  const traits = describe(s.traits);
  const extra = traits.length + describe(s.metadata).length;
  const user = h('span', { class: 'c-user' + (s.user_id || extra ? '' : ' no-user'), title: traits.map(([k, v]) => `${k}: ${v}`).join('\n') },
    s.user_id ? h('span', { class: 'uid' }, s.user_id) : h('span', { class: 'muted anon', title: 'Not identified' }, '—'));
  if (extra || s.user_id) {
    const open = expanded.has(s.id);
    const toggle = h('button', { class: 'traits-toggle', type: 'button', 'aria-expanded': String(open),
      'data-testid': 'traits-toggle', title: 'Traits and metadata' }, extra ? `+${extra}` : '…');
    toggle.addEventListener('click', () => {
      if (expanded.has(s.id)) expanded.delete(s.id);
      else expanded.add(s.id);
      const row = rows.get(s.id);
      if (row) row.sig = ''; // rebuilt, open or closed, by this render
      render();
    });
    user.append(toggle);
  }
  el.append(
    h('span', { class: 'c-status' }, status),
    h('span', { class: 'c-main' }, h('a', { class: 'sid mono', href: sessionPath(s.id) }, s.id), urlCell(s.url ?? '')),
    user,
    num('c-tabs', s.tabs ?? 1, ['tab', 'tabs'], 'Tabs (streams)', 1),
    num('c-errors', s.errors, ['error', 'errors'], `Errors: ${s.errors ?? 0} (warnings ${s.warnings ?? 0}, failed requests ${s.network_errors ?? 0})`),
    num('c-rage', s.rage_clicks, ['rage click', 'rage clicks'], 'Rage clicks: 3 or more clicks within 1 s inside 30 px'),
    num('c-dead', s.dead_clicks, ['dead click', 'dead clicks'], 'Dead clicks: no DOM change within 1 s of the click'),
    // The one duration (pm-spec.md), pushed at most once a second while the session is active:
    // an idle live session shows the span it was active, not a running clock.
    h('span', { class: 'c-dur mono', 'data-testid': 'duration' }, formatDuration(durationOf(s))),
    h('span', { class: 'c-browser', title: s.user_agent ?? '' }, browserOf(s)),
    h('span', { class: 'c-start', title: new Date(s.started_at).toLocaleString() }, formatStart(s.started_at)),
  );
  if (expanded.has(s.id)) el.append(detail(s));
  return el;
}

function render(): void {
  let prev: Element | null = null;
  const keep = new Set<string>();
  for (const s of shown) {
    keep.add(s.id);
    const sig = JSON.stringify(s);
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
  const filtered = isFiltered(filters);
  const offset = (page - 1) * PAGE;
  $('empty').hidden = !(loaded && total === 0 && !filtered);
  $('no-match').hidden = !(loaded && total === 0 && filtered);
  $('list-header').hidden = shown.length === 0;
  const count = $('count');
  count.dataset.total = loaded ? String(total) : '';
  count.textContent = loaded ? `${total.toLocaleString()}${filtered ? ' matching' : ''}` : '';
  $('pager').hidden = !loaded || total <= PAGE && page === 1;
  ($('prev') as HTMLButtonElement).disabled = page <= 1;
  ($('next') as HTMLButtonElement).disabled = offset + shown.length >= total;
  $('page-label').textContent = shown.length
    ? `${(offset + 1).toLocaleString()}–${(offset + shown.length).toLocaleString()} of ${total.toLocaleString()}`
    : `page ${page}`;
}

// ---- loading ---------------------------------------------------------------------------------

let seq = 0; // the newest request; older answers are dropped
let inFlight = false;
let lastStart = 0;
let lastCost = 0; // how long the last refresh took (ms): the next keeps clear of it
let refreshDue = false;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
const pushed = new Map<string, SessionInfo>(); // /updates items that came during the request

/** Fetches the current page; `refresh` when a push asked for it (timed, to space the next). */
async function load(refresh = false): Promise<void> {
  const mine = ++seq;
  const started = performance.now();
  inFlight = true;
  refreshDue = false;
  lastStart = started;
  pushed.clear();
  listEl.setAttribute('aria-busy', 'true');
  try {
    const { data } = await fetchJSON<SessionPage>(apiPath(filters, (page - 1) * PAGE, PAGE, serverNow()));
    if (mine !== seq) return;
    const list = (Array.isArray(data.sessions) ? data.sessions : []).filter((s) => isObject(s) && typeof s.id === 'string');
    total = typeof data.total === 'number' ? data.total : (page - 1) * PAGE + list.length;
    if (list.length === 0 && total > 0 && page > 1) {
      // Fewer matches than when this page was linked: show the last page there is.
      page = Math.max(1, Math.ceil(total / PAGE));
      history.replaceState(null, '', location.pathname + toQuery(filters, page));
      void load();
      return;
    }
    // An item pushed while this request ran is newer than what the answer says of it.
    shown = list.map((s) => pushed.get(s.id) ?? s);
    pushed.clear();
    loaded = true;
    $('changed').hidden = true;
    setSearchError('');
    setOffline(false);
    render();
  } catch (err) {
    if (mine !== seq) return;
    if (err instanceof HttpError && err.status === 400) {
      // A search the server refuses answers nothing: no rows of an earlier search, no count.
      setSearchError(err.message);
      shown = [];
      loaded = false;
      render();
    } else if (!socket.connected) {
      setOffline(true);
    }
  } finally {
    if (mine === seq) {
      inFlight = false;
      // Only refreshes count: the first answer of a cold server says little about the next.
      if (refresh) lastCost = performance.now() - started;
      listEl.removeAttribute('aria-busy');
      listEl.dataset.query = toQuery(filters, page); // what the rows answer (tests wait on it)
      if (refreshDue) scheduleRefresh();
    }
  }
}

/**
 * Pushed changes and a filtered, paged list: the server alone knows whether a changed session
 * matches the search (clicked text, traits, visited URLs...) and where it sorts, so a push
 * cannot be placed by the client. Rows on screen are updated in place at once (LIVE -> ended
 * within the push's latency, whatever the page), and then:
 * - on the first page (live first, then newest: where starts and new activity land), the page
 *   is refetched, debounced (250 ms, to gather a burst) and spaced 1 s apart, or twice the last
 *   refresh's time when that is longer (at most 3 s), so a slow search keeps the server at most
 *   half busy per open list; not while the tab is hidden (once when it shows again);
 * - on later pages, the rows are not reshuffled under the PM's eyes: a notice offers a refresh.
 */
function scheduleRefresh(delay = 250): void {
  if (page > 1) {
    $('changed').hidden = !loaded;
    return;
  }
  refreshDue = true;
  if (refreshTimer !== undefined || inFlight || document.hidden) return;
  const wait = Math.max(delay, lastStart + Math.min(3000, Math.max(1000, 2 * lastCost)) - performance.now());
  refreshTimer = setTimeout(() => {
    refreshTimer = undefined;
    if (refreshDue && !document.hidden) void load(true);
  }, wait);
}

function onPush(s: SessionInfo): void {
  if (inFlight) pushed.set(s.id, s);
  const i = shown.findIndex((x) => x.id === s.id);
  if (i >= 0) {
    shown[i] = s;
    render();
  }
  scheduleRefresh();
}

// ---- filters, URL --------------------------------------------------------------------------

/** New filters (or page): into the URL (a new history entry unless `replace`), then load. */
function apply(next: Filters, nextPage = 1, replace = false): void {
  filters = next;
  page = nextPage;
  const url = location.pathname + toQuery(filters, page);
  if (url !== location.pathname + location.search) {
    if (replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
  }
  clearTimeout(refreshTimer);
  refreshTimer = undefined;
  $('changed').hidden = true;
  syncInputs();
  void load();
}

function setSearchError(text: string): void {
  const el = $('search-error');
  el.textContent = text ? `The search was refused: ${text}` : '';
  el.hidden = !text;
}

function setOffline(down: boolean): void {
  $('offline').hidden = !down;
}

function field(name: string): HTMLInputElement {
  return panel.elements.namedItem(name) as HTMLInputElement;
}

function localInput(ms: number | null): string {
  if (ms === null) return '';
  const d = new Date(ms - httpClockSkew);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

function fromLocalInput(v: string): number | null {
  if (!v) return null;
  const t = new Date(v).getTime();
  return Number.isFinite(t) ? t + httpClockSkew : null;
}

function seconds(ms: number | null): string {
  return ms === null ? '' : String(Math.round(ms / 1000));
}

function ms(v: string): number | null {
  const n = Number(v);
  return v.trim() !== '' && Number.isFinite(n) && n >= 0 ? Math.round(n * 1000) : null;
}

const RANGE_LABEL: Record<Range, string> = {
  '24h': 'last 24 h', '7d': 'last 7 days', '30d': 'last 30 days', all: 'all time', custom: 'between',
};

/** The chips: every active filter but the search box, each with a way to remove it. */
function chips(): [string, () => Filters][] {
  const f = filters;
  const out: [string, () => Filters][] = [];
  const without = (change: Partial<Filters>) => () => ({ ...f, ...change });
  if (f.user) out.push([`user ${f.user}`, without({ user: '' })]);
  for (const t of f.traits) out.push([`trait ${t}`, without({ traits: f.traits.filter((x) => x !== t) })]);
  if (f.url) out.push([`visited URL contains ${f.url}`, without({ url: '' })]);
  if (f.clicked) out.push([`clicked ${f.clicked}`, without({ clicked: '' })]);
  if (f.hasErrors) out.push(['has errors', without({ hasErrors: false })]);
  if (f.hasRage) out.push(['has rage clicks', without({ hasRage: false })]);
  if (f.hasDead) out.push(['has dead clicks', without({ hasDead: false })]);
  if (f.live) out.push([f.live === '1' ? 'live only' : 'ended only', without({ live: '' })]);
  if (f.minDuration !== null) out.push([`≥ ${formatDuration(f.minDuration)}`, without({ minDuration: null })]);
  if (f.maxDuration !== null) out.push([`≤ ${formatDuration(f.maxDuration)}`, without({ maxDuration: null })]);
  if (f.range === 'custom') {
    const when = [f.since, f.before].map((t) => (t === null ? '…' : new Date(t - httpClockSkew).toLocaleString()));
    out.push([`${when[0]} – ${when[1]}`, without({ range: '24h', since: null, before: null })]);
  } else if (f.range !== '24h') {
    out.push([RANGE_LABEL[f.range], without({ range: '24h' })]);
  }
  return out;
}

/** The inputs and chips show `filters` (after a load from the URL, back/forward, a chip). */
function syncInputs(): void {
  if (document.activeElement !== filterBox) filterBox.value = filters.q;
  const set = (name: string, v: string) => {
    const el = field(name);
    if (document.activeElement !== el) el.value = v;
  };
  set('user', filters.user);
  set('url', filters.url);
  set('clicked', filters.clicked);
  set('min_duration', seconds(filters.minDuration));
  set('max_duration', seconds(filters.maxDuration));
  set('since', localInput(filters.since));
  set('before', localInput(filters.before));
  field('has_errors').checked = filters.hasErrors;
  field('has_rage').checked = filters.hasRage;
  field('has_dead').checked = filters.hasDead;
  (panel.elements.namedItem('live') as HTMLSelectElement).value = filters.live;
  (panel.elements.namedItem('range') as HTMLSelectElement).value = filters.range;
  $('custom-range').hidden = filters.range !== 'custom';
  const box = $('chips');
  const list = chips();
  box.replaceChildren(...list.map(([label, next]) => {
    const b = h('button', { class: 'chip', type: 'button', 'data-testid': 'chip', title: 'Remove this filter' }, label, h('span', { class: 'x', 'aria-hidden': 'true' }, '×'));
    b.setAttribute('aria-label', `Remove filter: ${label}`);
    b.addEventListener('click', () => apply(next()));
    return b;
  }));
  box.hidden = list.length === 0;
  $('filter-count').textContent = list.length ? ` · ${list.length}` : '';
}

/** The filters the panel's inputs say now (the trait being typed is added only on Enter). */
function fromInputs(): Filters {
  const range = (panel.elements.namedItem('range') as HTMLSelectElement).value as Range;
  return {
    ...filters,
    q: filterBox.value,
    user: field('user').value.trim(),
    url: field('url').value.trim(),
    clicked: field('clicked').value.trim(),
    hasErrors: field('has_errors').checked,
    hasRage: field('has_rage').checked,
    hasDead: field('has_dead').checked,
    live: (panel.elements.namedItem('live') as HTMLSelectElement).value as Filters['live'],
    minDuration: ms(field('min_duration').value),
    maxDuration: ms(field('max_duration').value),
    range: range in RANGES || range === 'custom' ? range : '24h',
    since: range === 'custom' ? fromLocalInput(field('since').value) : null,
    before: range === 'custom' ? fromLocalInput(field('before').value) : null,
  };
}

let typing: ReturnType<typeof setTimeout> | undefined;

/** Typing searches after a pause; one history entry per search, not per key. */
function typed(): void {
  clearTimeout(typing);
  typing = setTimeout(() => {
    const next = fromInputs();
    if (toQuery(next, 1) !== toQuery(filters, 1)) apply(next, 1, true);
  }, 300);
}

function addTrait(): void {
  const input = field('trait');
  const t = input.value.trim();
  if (!t) return;
  if (!/^[^:]+:/.test(t)) {
    setSearchError('a trait filter is key:value, e.g. plan:pro');
    return;
  }
  input.value = '';
  if (!filters.traits.includes(t)) apply({ ...fromInputs(), traits: [...filters.traits, t] });
}

$('search').addEventListener('submit', (ev) => {
  ev.preventDefault();
  clearTimeout(typing);
  apply(fromInputs());
});
filterBox.addEventListener('input', typed);
panel.addEventListener('submit', (ev) => ev.preventDefault());
panel.addEventListener('input', (ev) => {
  const t = ev.target as HTMLInputElement;
  if (t.name === 'trait') return;
  if (t.type === 'text' || t.type === 'number') typed();
});
panel.addEventListener('change', (ev) => {
  const t = ev.target as HTMLInputElement;
  if (t.name === 'trait') addTrait();
  else if (t.type !== 'text' && t.type !== 'number') {
    clearTimeout(typing);
    apply(fromInputs());
  }
});
field('trait').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter') {
    ev.preventDefault();
    addTrait();
  }
});
$('toggle-filters').addEventListener('click', () => {
  panel.hidden = !panel.hidden;
  $('toggle-filters').setAttribute('aria-expanded', String(!panel.hidden));
});
$('clear-filters').addEventListener('click', () => apply(emptyFilters()));
$('prev').addEventListener('click', () => apply(filters, Math.max(1, page - 1)));
$('next').addEventListener('click', () => apply(filters, page + 1));
$('refresh').addEventListener('click', () => void load());
window.addEventListener('popstate', () => {
  ({ filters, page } = fromQuery(location.search));
  syncInputs();
  void load();
});
document.addEventListener('keydown', (ev) => {
  // "/" searches, as on GitHub and in most list views (not while typing somewhere).
  const t = ev.target as HTMLElement;
  if (ev.key === '/' && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !t.closest('input, select, textarea, [contenteditable]')) {
    ev.preventDefault();
    filterBox.focus();
    filterBox.select();
  }
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && refreshDue) scheduleRefresh(0);
});

// ---- /updates --------------------------------------------------------------------------------

let firstList = true;
const socket = new ReconnectingSocket(wsURL('/updates'), {
  onOpen(reconnect) {
    setOffline(false);
    if (reconnect) void load(); // whatever page: it may have missed anything while offline
  },
  onMessage(raw) {
    if (!isObject(raw)) return;
    const msg = raw as unknown as UpdatesMessage;
    if (msg.type === 'session' && isObject(msg.session) && typeof msg.session.id === 'string') {
      onPush(msg.session);
    } else if (msg.type === 'sessions' && firstList) {
      // Sent on subscribing; a session that started between our first load and the
      // subscription is only in it. Its contents are the default view: refresh instead.
      firstList = false;
      scheduleRefresh();
    }
  },
  onDown() {
    setOffline(true);
  },
});

syncInputs();
void load();
