// Replay of a recorded (ended) session with rrweb-player: paged loading, click markers on
// the progress bar, inactivity skipping, fullscreen (player's own button), ?t= deep link.
import rrwebPlayer from 'rrweb-player';
import { loadEventPages } from './api';
import { StreamFollower } from './streams';
import { formatDuration, h } from './format';
import type { KeyTarget } from './keys';
import { EventType, IncrementalSource, MouseInteractions, type eventWithTime } from 'rrweb';
import { isObject } from './types';

/** Svelte component methods (svelte's own types are not installed). */
interface SvelteApi {
  $set(props: Record<string, unknown>): void;
  $destroy(): void;
}
type PlayerEvent = ConstructorParameters<typeof rrwebPlayer>[0]['props']['events'][number];
const CONTROLLER_HEIGHT = 80;

export interface ReplayOptions {
  /** Offset (ms from the first event) to open at, paused; 'end' for the last frame; null to autoplay. */
  startAt: number | 'end' | null;
  onStatus(text: string): void;
}

export class ReplayView {
  private player: rrwebPlayer | null = null;
  private readonly follower = new StreamFollower();
  private pending: eventWithTime[] = [];
  private clicks: number[] = [];
  private markers: HTMLElement | null = null;
  private cancelled = false;
  private startAt: number | 'end' | null;
  private loadedAll = false;
  private readonly onResize = () => this.resize();

  constructor(private readonly container: HTMLElement, private readonly sessionId: string, private readonly opts: ReplayOptions) {
    this.startAt = opts.startAt;
  }

  async load(): Promise<void> {
    this.opts.onStatus('Loading events…');
    let count = 0;
    await loadEventPages(
      this.sessionId,
      (page, last) => {
        count += page.length;
        this.loadedAll = last;
        const evs: eventWithTime[] = [];
        for (const se of page) for (const x of this.follower.push(se)) evs.push(x.event);
        for (const e of evs) if (isClick(e)) this.clicks.push(e.timestamp);
        if (!this.player) {
          this.pending.push(...evs);
          if (this.pending.length >= 2 && this.pending.some((e) => e.type === EventType.FullSnapshot)) this.create();
        } else {
          for (const e of evs) this.player.addEvent(e as PlayerEvent);
        }
        // addEvent() hands events to the replayer in a microtask: read its metadata after that.
        setTimeout(() => {
          this.drawMarkers();
          this.maybeSeek();
        }, 0);
        this.opts.onStatus(last ? '' : `Loading events… ${count}`);
      },
      () => this.cancelled,
    );
    if (!this.player && !this.cancelled) this.opts.onStatus('Nothing to replay: this session has no full page snapshot.');
  }

  private size(): { width: number; height: number } {
    const width = Math.max(320, this.container.clientWidth || 960);
    const top = this.container.getBoundingClientRect().top + window.scrollY;
    const height = Math.max(240, Math.min(window.innerHeight - top - CONTROLLER_HEIGHT - 24, Math.round(width * 0.75)));
    return { width, height };
  }

  private create(): void {
    const { width, height } = this.size();
    const autoPlay = this.startAt === null;
    this.player = new rrwebPlayer({
      target: this.container,
      props: {
        events: this.pending as PlayerEvent[],
        width,
        height,
        autoPlay,
        speedOption: [1, 2, 4, 8],
        skipInactive: true,
        showController: true,
        triggerFocus: false,
        showWarning: false,
        tags: { error: '#dc2626' },
      },
    });
    this.pending = [];
    window.addEventListener('resize', this.onResize);
  }

  /** Deep link: seek once the loaded events reach the requested offset (or all are in). */
  private maybeSeek(): void {
    if (!this.player || this.startAt === null) return;
    const total = this.player.getMetaData().totalTime;
    if (this.startAt === 'end') {
      if (!this.loadedAll) return;
      // +1: events stamped exactly at the offset are only applied when the offset is past them.
      this.player.goto(total + 1, false);
    } else {
      if (this.startAt > total && !this.loadedAll) return;
      this.player.goto(Math.min(this.startAt, total), false);
    }
    this.startAt = null;
  }

  private resize(): void {
    if (!this.player) return;
    (this.player as unknown as SvelteApi).$set({ ...this.size() });
    this.player.triggerResize();
  }

  /** Click markers over rrweb-player's progress bar (its `tags` only mark Custom events). */
  private drawMarkers(): void {
    if (!this.player) return;
    const bar = this.container.querySelector<HTMLElement>('.rr-progress');
    if (!bar) return;
    if (!this.markers || !bar.contains(this.markers)) {
      this.markers = h('div', { class: 'sd-markers' });
      bar.appendChild(this.markers);
    }
    const { startTime, totalTime } = this.player.getMetaData();
    const frag = document.createDocumentFragment();
    for (const ts of this.clicks) {
      const off = ts - startTime;
      const left = totalTime > 0 ? (100 * off) / totalTime : 0;
      frag.appendChild(h('span', { class: 'sd-marker', style: `left:${left.toFixed(3)}%`, title: `click at ${formatDuration(off)}` }));
    }
    this.markers.replaceChildren(frag);
  }

  currentTime(): number {
    return this.player ? this.player.getReplayer().getCurrentTime() : 0;
  }

  /** Space / arrows for rrweb-player, once it exists. */
  keys(): KeyTarget | null {
    const player = this.player;
    if (!player) return null;
    return {
      playPause: () => (player.toggle(), true),
      seekBy: (ms) => player.goto(Math.max(0, Math.min(player.getMetaData().totalTime, this.currentTime() + ms))),
    };
  }

  destroy(): void {
    this.cancelled = true;
    window.removeEventListener('resize', this.onResize);
    if (this.player) (this.player as unknown as SvelteApi).$destroy();
    this.player = null;
    this.container.replaceChildren();
  }
}

function isClick(e: eventWithTime): boolean {
  return (
    e.type === EventType.IncrementalSnapshot &&
    isObject(e.data) &&
    e.data.source === IncrementalSource.MouseInteraction &&
    e.data.type === MouseInteractions.Click
  );
}
