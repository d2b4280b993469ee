// The session list's search: filters <-> the list's own URL (so a PM can share a search) <->
// GET /api/sessions parameters (pm-spec.md "Search"). The list URL uses the API's parameter
// names, plus `range` (a window relative to now, so a shared "last 7 days" stays that) and `page`.

export const RANGES = { '24h': 24, '7d': 24 * 7, '30d': 24 * 30, all: 0 } as const;
export type Range = keyof typeof RANGES | 'custom';

export interface Filters {
  q: string;
  user: string;
  traits: string[]; // "key:value", each one more condition (AND)
  url: string;
  clicked: string;
  hasErrors: boolean;
  hasRage: boolean;
  hasDead: boolean;
  live: '' | '1' | '0';
  minDuration: number | null; // ms
  maxDuration: number | null; // ms
  range: Range;
  since: number | null; // ms since epoch, server clock; only with range 'custom'
  before: number | null;
}

export function emptyFilters(): Filters {
  return {
    q: '', user: '', traits: [], url: '', clicked: '', hasErrors: false, hasRage: false,
    hasDead: false, live: '', minDuration: null, maxDuration: null, range: '24h', since: null,
    before: null,
  };
}

function intParam(p: URLSearchParams, name: string): number | null {
  const raw = p.get(name);
  if (raw === null || raw.trim() === '') return null;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : null;
}

/** The filters and the page number (1-based) a list URL's query says. */
export function fromQuery(search: string): { filters: Filters; page: number } {
  const p = new URLSearchParams(search);
  const f = emptyFilters();
  f.q = p.get('q') ?? '';
  f.user = p.get('user') ?? '';
  f.traits = p.getAll('trait').filter((t) => t.includes(':'));
  f.url = p.get('url') ?? '';
  f.clicked = p.get('clicked') ?? '';
  f.hasErrors = p.get('has_errors') === '1';
  f.hasRage = p.get('has_rage') === '1';
  f.hasDead = p.get('has_dead') === '1';
  const live = p.get('live');
  f.live = live === '1' || live === '0' ? live : '';
  f.minDuration = intParam(p, 'min_duration');
  f.maxDuration = intParam(p, 'max_duration');
  f.since = intParam(p, 'since');
  f.before = intParam(p, 'before');
  const range = p.get('range');
  if (f.since !== null || f.before !== null) f.range = 'custom';
  else if (range && range in RANGES) f.range = range as Range;
  const page = intParam(p, 'page');
  return { filters: f, page: page && page > 0 ? page : 1 };
}

/** Parameters shared by the list URL and the API (everything but the time window and paging). */
function common(f: Filters): URLSearchParams {
  const p = new URLSearchParams();
  if (f.q.trim()) p.set('q', f.q.trim());
  if (f.user.trim()) p.set('user', f.user.trim());
  for (const t of f.traits) p.append('trait', t);
  if (f.url.trim()) p.set('url', f.url.trim());
  if (f.clicked.trim()) p.set('clicked', f.clicked.trim());
  if (f.hasErrors) p.set('has_errors', '1');
  if (f.hasRage) p.set('has_rage', '1');
  if (f.hasDead) p.set('has_dead', '1');
  if (f.live) p.set('live', f.live);
  if (f.minDuration !== null) p.set('min_duration', String(f.minDuration));
  if (f.maxDuration !== null) p.set('max_duration', String(f.maxDuration));
  return p;
}

/** The list's query string for these filters and page ('' for the default view). */
export function toQuery(f: Filters, page: number): string {
  const p = common(f);
  if (f.range === 'custom') {
    if (f.since !== null) p.set('since', String(f.since));
    if (f.before !== null) p.set('before', String(f.before));
  } else if (f.range !== '24h') {
    p.set('range', f.range);
  }
  if (page > 1) p.set('page', String(page));
  const s = p.toString();
  return s ? '?' + s : '';
}

/** GET /api/sessions for one page of matches; `serverNow` turns a relative range into `since`. */
export function apiPath(f: Filters, offset: number, limit: number, serverNow: number): string {
  const p = common(f);
  if (f.range === 'custom') {
    if (f.since !== null) p.set('since', String(f.since));
    if (f.before !== null) p.set('before', String(f.before));
  } else if (f.range !== '24h') {
    // 24 h is the server's default window (which adds every live session, as the others do).
    p.set('since', String(RANGES[f.range] ? Math.floor(serverNow - RANGES[f.range] * 3600_000) : 0));
  }
  p.set('limit', String(limit));
  p.set('offset', String(offset));
  return '/api/sessions?' + p.toString();
}

/** Whether any filter narrows the default view (the last 24 h and everything live). */
export function isFiltered(f: Filters): boolean {
  return toQuery(f, 1) !== '';
}
