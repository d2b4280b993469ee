// /sessions/<id>: live view (WS /watch) for live sessions, replay otherwise (lib/watch.ts).
import '@rrweb/replay/dist/style.css';
import { HttpError, getSession } from './lib/api';
import { describeUserAgent, formatDuration, formatStart } from './lib/format';
import { PlayerController } from './lib/watch';
import { durationOf, type SessionInfo } from './lib/types';

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error('missing #' + id);
  return el;
}

function sessionIdFromPath(): string {
  const m = location.pathname.match(/^\/sessions\/([^/]+)\/?$/);
  if (!m) return '';
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return m[1];
  }
}

function showMeta(info: SessionInfo): void {
  const parts = [
    `started ${formatStart(info.started_at)}`,
    info.live ? '' : `${formatDuration(durationOf(info))} long`,
    info.user_id ? `user ${info.user_id}` : '',
    ...Object.entries(info.traits ?? {}).slice(0, 3).map(([k, v]) => `${k}: ${String(v)}`),
    (info.tabs ?? 0) > 1 ? `${info.tabs} tabs` : '',
    info.live ? '' : `${info.event_count} events`,
    describeUserAgent(info.user_agent),
  ].filter(Boolean);
  $('session-meta').textContent = parts.join(' · ');
  const url = $('session-url') as HTMLAnchorElement;
  if (info.url) {
    url.textContent = info.url;
    url.href = info.url;
    url.hidden = false;
  }
  document.title = `${info.id} – StreamDOM`;
}

function setStatus(text: string): void {
  const s = $('status');
  s.textContent = text;
  s.hidden = !text;
}

/** "Copy link at this moment": puts ?t=<offset on screen> in the URL and copies it (live too). */
function bindShareButton(moment: () => number): void {
  const share = $('share-time') as HTMLButtonElement;
  share.hidden = false;
  share.addEventListener('click', () => {
    const u = new URL(location.href);
    u.searchParams.set('t', String(Math.round(moment())));
    history.replaceState(null, '', u.toString());
    const done = () => {
      share.textContent = 'Link copied';
      share.dataset.url = u.toString();
      setTimeout(() => (share.textContent = 'Copy link at this moment'), 1500);
    };
    if (navigator.clipboard) navigator.clipboard.writeText(u.toString()).then(done, done);
    else done();
  });
}

/** ?t=<ms>: where the player opens, paused (a live session: rewound there); null: replay autoplays, live stays live. */
function startOffset(): number | null {
  const params = new URLSearchParams(location.search);
  const t = Number(params.get('t'));
  return Number.isFinite(t) && params.has('t') ? Math.max(0, t) : null;
}

async function main(): Promise<void> {
  const id = sessionIdFromPath();
  $('session-id').textContent = id;
  let info: SessionInfo | null = null;
  for (let attempt = 0; !info; attempt++) {
    try {
      info = await getSession(id);
    } catch (err) {
      if (err instanceof HttpError && (err.status === 404 || err.status === 400)) {
        const nf = $('not-found');
        nf.textContent = `Unknown session ${id}`;
        nf.hidden = false;
        $('session-head').hidden = true;
        document.title = 'Unknown session – StreamDOM';
        return;
      }
      setStatus('Server unreachable — retrying…');
      await new Promise((r) => setTimeout(r, Math.min(10000, 500 * 2 ** attempt)));
    }
  }
  setStatus('');
  showMeta(info);
  const player = new PlayerController(info, {
    stage: $('stage'),
    controls: $('controls'),
    liveBadge: $('live-badge'),
    latency: $('latency'),
    timeline: $('timeline') as HTMLInputElement,
    timeLabel: $('time-label'),
    speed: $('speed') as HTMLSelectElement,
    speedBox: $('speed-box'),
    playToggle: $('play-toggle') as HTMLButtonElement,
    markers: $('markers'),
    goLive: $('go-live') as HTMLButtonElement,
    share: $('share-time') as HTMLButtonElement,
    status: $('status'),
    banner: $('banner'),
    tabs: $('tabs'),
    events: $('event-list'),
    help: $('help'),
  }, startOffset(), showMeta);
  bindShareButton(() => player.moment());
}

void main();
