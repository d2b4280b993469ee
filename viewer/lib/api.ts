// HTTP helpers: JSON fetches that send the PM to /login when the server asks for it.
import { isObject, type SessionInfo, type StreamEvent, type RREvent } from './types';

export class HttpError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

function redirectToLogin(): void {
  const next = location.pathname + location.search;
  location.href = '/login?next=' + encodeURIComponent(next);
}

/** Server clock minus viewer clock, estimated (±1 s) from HTTP Date headers; 0 until known. */
export let httpClockSkew = 0;

function noteDate(res: Response): void {
  const d = res.headers.get('Date');
  if (!d) return;
  const t = Date.parse(d);
  if (Number.isNaN(t)) return;
  const skew = t + 500 - Date.now();
  httpClockSkew = Math.abs(skew) > 2000 ? skew : 0;
}

export async function fetchJSON<T>(url: string): Promise<{ data: T; res: Response }> {
  const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  noteDate(res);
  if (res.status === 401 || res.status === 403 || (res.redirected && new URL(res.url).pathname === '/login')) {
    redirectToLogin();
    throw new HttpError(res.status, 'login required');
  }
  if (!res.ok) {
    // API errors are JSON {"error": ...}: keep the server's reason (e.g. which parameter is wrong).
    let reason = '';
    try {
      const body: unknown = await res.json();
      if (isObject(body) && typeof body.error === 'string') reason = body.error;
    } catch {
      // not JSON: the status line says enough
    }
    throw new HttpError(res.status, reason || `${res.status} ${res.statusText}`);
  }
  return { data: (await res.json()) as T, res };
}

export function wsURL(path: string): string {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
}

export function sessionPath(id: string): string {
  return '/sessions/' + encodeURIComponent(id);
}

export async function getSession(id: string): Promise<SessionInfo> {
  return (await fetchJSON<SessionInfo>('/api/sessions/' + encodeURIComponent(id))).data;
}

/** Normalises an /events?meta=1 item (or a bare rrweb event) to a StreamEvent. */
function toStreamEvent(item: unknown, index: number): StreamEvent | null {
  if (!isObject(item)) return null;
  if (isObject(item.event)) {
    return {
      streamId: String(item.streamId ?? ''),
      seq: typeof item.seq === 'number' ? item.seq : index + 1,
      recvAt: typeof item.recvAt === 'number' ? item.recvAt : undefined,
      event: item.event as unknown as RREvent,
    };
  }
  if (typeof item.type === 'number' && typeof item.timestamp === 'number') {
    return { streamId: '', seq: index + 1, event: item as unknown as RREvent };
  }
  return null;
}

/**
 * Pages through GET /api/sessions/<id>/events?meta=1, following X-Next-Offset,
 * calling onPage for each page. Resolves when the last page is in.
 */
export async function loadEventPages(
  id: string,
  onPage: (events: StreamEvent[], last: boolean) => void,
  isCancelled: () => boolean = () => false,
  pageSize = 2000,
): Promise<void> {
  let offset: number | null = 0;
  let index = 0;
  while (offset !== null) {
    const url: string = `/api/sessions/${encodeURIComponent(id)}/events?meta=1&limit=${pageSize}&offset=${offset}`;
    const { data, res }: { data: unknown[]; res: Response } = await fetchJSON<unknown[]>(url);
    if (isCancelled()) return;
    const page: StreamEvent[] = [];
    for (const item of Array.isArray(data) ? data : []) {
      const se = toStreamEvent(item, index++);
      if (se) page.push(se);
    }
    const next: string | null = res.headers.get('X-Next-Offset');
    const n = next === null ? NaN : Number(next);
    offset = next !== null && Number.isFinite(n) && n > offset ? n : null;
    onPage(page, offset === null);
  }
}

/** Every event of the session (all pages), with stream and seq. */
export async function loadAllEvents(id: string): Promise<StreamEvent[]> {
  const all: StreamEvent[] = [];
  await loadEventPages(id, (page) => {
    for (const se of page) all.push(se);
  });
  return all;
}

/** The timestamp of the session's first event (replay offsets count from it); null if unknown. */
export async function firstEventTimestamp(id: string): Promise<number | null> {
  const { data } = await fetchJSON<unknown[]>(`/api/sessions/${encodeURIComponent(id)}/events?limit=1`);
  const first = Array.isArray(data) ? data[0] : undefined;
  return isObject(first) && typeof first.timestamp === 'number' ? first.timestamp : null;
}
