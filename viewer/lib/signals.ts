// Rage and dead clicks of one tab, by the same rule as the server's counts (pm-spec.md, README):
// - rage: a run of clicks, each within 1 s and 30 px of the run's first click; a run of 3 or
//   more is one rage click, marked at its 3rd click. A click that does not join starts the next run.
// - dead: a click after which the tab's DOM did not change (no Mutation event after it in the
//   stream's order) within 1 s of it. Decided once a later event of the stream is stamped more than
//   1 s after it, or the stream ends (settle()).
import { clickOf, isMutation } from './kinds';
import type { RREvent } from './types';

export const RAGE_WINDOW_MS = 1000;
export const RAGE_RADIUS_PX = 30;
export const RAGE_MIN_CLICKS = 3;
export const DEAD_WINDOW_MS = 1000;

export interface Signal {
  kind: 'rage' | 'dead';
  ts: number;
  /** The clicked node (recorded id). */
  nodeId: number;
}

export class ClickSignals {
  private run: { t0: number; x0: number; y0: number; n: number } | null = null;
  /** Clicks whose dead/alive question is still open, oldest first. */
  private open: { ts: number; nodeId: number }[] = [];

  /** Feeds the stream's next event; returns the signals it decides. */
  push(e: RREvent): Signal[] {
    const out: Signal[] = [];
    if (isMutation(e)) this.open = this.open.filter((c) => e.timestamp - c.ts > DEAD_WINDOW_MS);
    this.settle(e.timestamp, out, false);
    const c = clickOf(e);
    if (!c) return out;
    const r = this.run;
    if (r && e.timestamp - r.t0 <= RAGE_WINDOW_MS && Math.hypot(c.x - r.x0, c.y - r.y0) <= RAGE_RADIUS_PX) {
      r.n++;
      if (r.n === RAGE_MIN_CLICKS) out.push({ kind: 'rage', ts: e.timestamp, nodeId: c.id });
    } else {
      this.run = { t0: e.timestamp, x0: c.x, y0: c.y, n: 1 };
    }
    this.open.push({ ts: e.timestamp, nodeId: c.id });
    return out;
  }

  /**
   * Clicks more than 1 s before `now` (stream clock) with no mutation since are dead; with
   * `final` (the stream ended), every open click is.
   */
  settle(now: number, out: Signal[] = [], final = false): Signal[] {
    while (this.open.length && (final || now - this.open[0].ts > DEAD_WINDOW_MS)) {
      const c = this.open.shift()!;
      out.push({ kind: 'dead', ts: c.ts, nodeId: c.nodeId });
    }
    return out;
  }
}
