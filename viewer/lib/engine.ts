// Replay and rewind: one rrweb Replayer (from @rrweb/replay, the same copy the live view uses)
// showing one tab, with our own clock for the session's time.
//
// Why one Replayer for the shown tab, rebuilt when the tab changes, and not one per tab kept in
// step: a Replayer renders one stream's DOM in its own iframe, and N live iframes cost N times the
// DOM, styles and CPU while only one is visible (and `.replayer-wrapper iframe` would no longer
// name the picture on screen). Switching rebuilds the tab's DOM from its latest full snapshot
// before the moment and applies the events since, synchronously (rrweb's own seek path): tens
// of ms for a typical page, once per switch.
//
// The clock is ours (offset since the session's first event, advancing at `speed` while
// playing), because the session goes on when the shown tab's events stop, and a tab switch
// replaces the Replayer; the Replayer's own timer only paces the shown tab's events in between.
//
// Exact seeks: rrweb applies the events stamped strictly before its seek point, so the event at
// the moment itself (often the last one, at the end) was left out; toReplayer() asks for one
// millisecond more (timestamps are integer ms), so every seek shows all events up to and
// including the moment.
import { Replayer } from '@rrweb/replay';
import type { eventWithTime } from '@rrweb/types';
import { fitReplayer } from './scale';
import { isObject, type StreamEvent } from './types';
import type { SessionStore } from './session';

export interface ReplayOptions {
  stage: HTMLElement;
  store: SessionStore;
  speed: number;
  /** The end of the timeline (offset): the session's duration, or the live edge while live. */
  end(): number;
  /** Playback reached end() (it pauses there). */
  onEnd(): void;
  /** The tab on screen changed. */
  onShow(streamId: string | null): void;
  /** Jump over stretches with no event in any tab (replays; a rewind keeps real time). */
  skipIdle: boolean;
}

/** No event in any tab for longer than this is idle time, skipped while playing a replay... */
const IDLE_MS = 3000;
/** ...up to this long before the next event, so what comes next is seen arriving. */
const IDLE_LEAD_MS = 500;

export class ReplayPlayer {
  private replayer: Replayer | null = null;
  private shown: string | null = null;
  private start = 0; // the shown Replayer's first timestamp
  private pinned: string | null = null;
  private at = 0; // offset at `since` (performance.now())
  private since = performance.now();
  private speed: number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private dims: { width: number; height: number } | null = null;
  private readonly onWindowResize = () => this.fit();
  private idle: { from: number; to: number }[] | null = null;
  playing = false;

  constructor(private readonly opts: ReplayOptions) {
    this.speed = opts.speed;
    window.addEventListener('resize', this.onWindowResize);
  }

  /** The session time on screen, ms since its first event. */
  currentTime(): number {
    const t = this.playing ? this.at + (performance.now() - this.since) * this.speed : this.at;
    return Math.max(0, Math.min(t, this.opts.end()));
  }

  /** The tab on screen. */
  get tab(): string | null {
    return this.shown;
  }

  /** Shows `offset` exactly (all events up to and including it); keeps playing if it was. */
  seek(offset: number): void {
    this.at = Math.max(0, Math.min(offset, this.opts.end()));
    this.since = performance.now();
    this.render();
    this.schedule();
  }

  play(offset?: number): void {
    let t = offset ?? this.currentTime();
    if (offset === undefined && t >= this.opts.end() - 1) t = 0; // play at the end: from the start
    this.playing = true;
    this.seek(t);
  }

  pause(): void {
    this.at = this.currentTime();
    this.playing = false;
    clearTimeout(this.timer);
    this.render();
  }

  setSpeed(speed: number): void {
    this.at = this.currentTime();
    this.since = performance.now();
    this.speed = speed;
    this.replayer?.setConfig({ speed });
    this.schedule();
  }

  /** Show `streamId` from now on (null: follow the user). */
  pin(streamId: string | null): void {
    this.pinned = streamId;
    this.seek(this.currentTime());
  }

  /** A live event, already in the store, for a rewind that goes on receiving them. */
  add(se: StreamEvent): void {
    if (se.streamId === this.shown && this.replayer) this.replayer.addEvent(se.event as never);
    else if (this.shown === null && this.playing) return this.seek(this.currentTime()); // the first tab arrived
    if (this.playing) this.schedule(); // it may have brought a tab switch before the next wake-up
  }

  /** Builds the shown tab's DOM at the current time (rebuilding the Replayer when the tab changes). */
  private render(): void {
    const store = this.opts.store;
    const ts = (store.origin ?? 0) + this.at;
    const want = this.pinned ?? store.focusAt(ts);
    if (want !== this.shown || !this.replayer) this.build(want);
    const r = this.replayer;
    if (!r) return;
    const off = Math.max(0, Math.floor(ts) + 1 - this.start); // inclusive: see the header comment
    if (this.playing) r.play(off);
    else r.pause(off);
  }

  private build(streamId: string | null): void {
    this.destroyReplayer();
    this.shown = streamId;
    const events = streamId === null ? [] : this.opts.store.tabs.get(streamId)?.events ?? [];
    if (events.length >= 2) {
      const r = new Replayer(events as eventWithTime[] as never[], {
        root: this.opts.stage,
        speed: this.speed,
        skipInactive: false,
        triggerFocus: false,
        showWarning: false,
        mouseTail: { duration: 400, strokeStyle: 'rgba(220, 38, 38, 0.45)', lineWidth: 2 },
      });
      r.on('resize', (d: unknown) => {
        if (isObject(d) && typeof d.width === 'number' && typeof d.height === 'number') {
          this.dims = { width: d.width, height: d.height };
          this.fit();
        }
      });
      this.start = r.getMetaData().startTime;
      this.replayer = r;
    }
    this.opts.onShow(streamId);
  }

  /** While playing: wake up at the next tab switch (follow mode) or at the end. */
  private schedule(): void {
    clearTimeout(this.timer);
    if (!this.playing) return;
    const store = this.opts.store;
    const origin = store.origin ?? 0;
    const now = this.currentTime();
    let next = this.opts.end();
    const sw = this.pinned === null ? store.nextSwitch(origin + now) : null;
    if (sw !== null) next = Math.min(next, sw - origin);
    const gap = this.nextIdle(origin + now);
    if (gap) next = Math.min(next, gap.from - origin);
    this.timer = setTimeout(() => this.wake(), Math.max(0, (next - now) / this.speed) + 5);
  }

  private wake(): void {
    const t = this.currentTime();
    if (t >= this.opts.end()) {
      this.playing = false;
      this.seek(this.opts.end());
      this.opts.onEnd();
      return;
    }
    const origin = this.opts.store.origin ?? 0;
    const gap = this.nextIdle(origin + t);
    if (gap && gap.from <= origin + t) return this.seek(gap.to - IDLE_LEAD_MS - origin);
    const want = this.pinned ?? this.opts.store.focusAt(origin + t);
    if (want !== this.shown) this.seek(t);
    else this.schedule();
  }

  /** The first idle stretch that ends after `ts` (null if none, or not skipping). */
  private nextIdle(ts: number): { from: number; to: number } | null {
    if (!this.opts.skipIdle) return null;
    if (!this.idle) {
      // A replay's events no longer change: find the gaps once, over every tab's events.
      const times: number[] = [];
      for (const tab of this.opts.store.tabs.values()) for (const e of tab.events) times.push(e.timestamp);
      times.sort((a, b) => a - b);
      this.idle = [];
      for (let i = 1; i < times.length; i++) {
        if (times[i] - times[i - 1] > IDLE_MS) this.idle.push({ from: times[i - 1], to: times[i] });
      }
    }
    return this.idle.find((g) => g.to - IDLE_LEAD_MS > ts) ?? null;
  }

  private fit(): void {
    if (this.dims && this.replayer) fitReplayer(this.opts.stage, this.replayer.wrapper, this.dims.width, this.dims.height);
  }

  private destroyReplayer(): void {
    const r = this.replayer;
    this.replayer = null;
    if (!r) return;
    try {
      r.destroy();
    } catch {
      r.wrapper.remove();
    }
  }

  destroy(): void {
    clearTimeout(this.timer);
    window.removeEventListener('resize', this.onWindowResize);
    this.destroyReplayer();
  }
}
