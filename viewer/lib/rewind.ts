// Rewind while live: a plain rrweb Replayer over the whole session (fetched from
// /api/sessions/<id>/events) that keeps receiving the live events as they arrive.
import { Replayer, type eventWithTime } from 'rrweb';
import { fitReplayer } from './scale';
import { isObject, type StreamEvent } from './types';
import type { StreamFollower } from './streams';

export class RewindPlayer {
  private readonly replayer: Replayer;
  private readonly maxSeq = new Map<string, number>();
  private dims: { width: number; height: number } | null = null;
  private readonly onWindowResize = () => this.fit();
  playing = false;

  /** `events` is the full recorded list (unfiltered; `follower` applies the stream rule). */
  constructor(
    private readonly stage: HTMLElement,
    events: StreamEvent[],
    private readonly follower: StreamFollower,
    speed: number,
    onFinish: () => void,
  ) {
    const list: eventWithTime[] = [];
    for (const se of events) {
      this.noteSeq(se);
      for (const x of follower.push(se)) list.push(x.event);
    }
    this.replayer = new Replayer(list, {
      root: stage,
      speed,
      skipInactive: false,
      triggerFocus: false,
      showWarning: false,
    });
    this.replayer.on('resize', (d: unknown) => {
      if (isObject(d) && typeof d.width === 'number' && typeof d.height === 'number') {
        this.dims = { width: d.width, height: d.height };
        this.fit();
      }
    });
    this.replayer.on('finish', () => {
      this.playing = false;
      onFinish();
    });
    window.addEventListener('resize', this.onWindowResize);
  }

  private noteSeq(se: StreamEvent): boolean {
    const prev = this.maxSeq.get(se.streamId) ?? 0;
    if (se.seq <= prev) return false;
    this.maxSeq.set(se.streamId, se.seq);
    return true;
  }

  /** Appends a live event unless the fetched list already had it. */
  add(se: StreamEvent): void {
    if (!this.noteSeq(se)) return;
    for (const x of this.follower.push(se)) this.replayer.addEvent(x.event);
  }

  totalTime(): number {
    return this.replayer.getMetaData().totalTime;
  }

  currentTime(): number {
    return Math.min(this.totalTime(), Math.max(0, this.replayer.getCurrentTime()));
  }

  play(offset = this.currentTime()): void {
    this.replayer.play(Math.max(0, Math.min(offset, this.totalTime())));
    this.playing = true;
  }

  pause(): void {
    this.replayer.pause();
    this.playing = false;
  }

  seek(offset: number): void {
    const t = Math.max(0, Math.min(offset, this.totalTime()));
    if (this.playing) this.replayer.play(t);
    else this.replayer.pause(t);
  }

  setSpeed(speed: number): void {
    this.replayer.setConfig({ speed });
  }

  private fit(): void {
    if (this.dims) fitReplayer(this.stage, this.replayer.wrapper, this.dims.width, this.dims.height);
  }

  destroy(): void {
    window.removeEventListener('resize', this.onWindowResize);
    try {
      this.replayer.destroy();
    } catch {
      this.replayer.wrapper.remove();
    }
  }
}
