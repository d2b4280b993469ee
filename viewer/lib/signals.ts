// Rage and dead clicks of one tab: the server's rule (streamdom/signals.py, README "Session
// index"), click for click, so the timeline's markers of a finished session are the summary's
// `rage_clicks` and `dead_clicks`:
// - rage: a click with at least 2 earlier clicks of the tab within 1 s before it and within
//   30 px of it; consecutive such clicks are one burst, marked where it starts (its 3rd click).
// - dead: a click followed within 1 s (recorder clock, same tab) by no change of the page: no DOM
//   mutation, input, scroll, media or stylesheet change, no new page (Meta or FullSnapshot), and
//   no next page load in the tab however late (the click navigated). A click is decided when its
//   tab shows a change within the second (alive) or an event stamped more than 1 s after it
//   (dead); a click whose tab ends first is not counted.
import { EventType, IncrementalSource } from '@rrweb/types';
import { clickOf } from './kinds';
import { isObject, type RREvent } from './types';

export const RAGE_WINDOW_MS = 1000;
export const RAGE_RADIUS_PX = 30;
export const RAGE_CLICKS = 3;
export const DEAD_WINDOW_MS = 1000;
const REACTIONS: ReadonlySet<unknown> = new Set([
  IncrementalSource.Mutation,
  IncrementalSource.Input,
  IncrementalSource.Scroll,
  IncrementalSource.MediaInteraction,
  IncrementalSource.StyleSheetRule,
  IncrementalSource.AdoptedStyleSheet,
  IncrementalSource.StyleDeclaration,
]);

export interface Signal {
  kind: 'rage' | 'dead';
  ts: number;
  /** The clicked node (recorded id). */
  nodeId: number;
}

export class ClickSignals {
  /** The tab's clicks of the last second (at most 8), for rage. */
  private recent: { ts: number; x: number; y: number }[] = [];
  private inBurst = false;
  /** Clicks waiting for a change within their second. */
  private undecided: { ts: number; nodeId: number }[] = [];

  /** Feeds the tab's next event (in its order); returns the signals it decides. */
  push(e: RREvent): Signal[] {
    const out: Signal[] = [];
    const ts = e.timestamp;
    const source = e.type === EventType.IncrementalSnapshot && isObject(e.data) ? e.data.source : undefined;
    const reacted = e.type === EventType.Meta || e.type === EventType.FullSnapshot || REACTIONS.has(source);
    if (e.type === EventType.Meta) this.undecided = []; // a new page: the clicks led there
    if (this.undecided.length) {
      const keep = [];
      for (const c of this.undecided) {
        if (ts > c.ts + DEAD_WINDOW_MS) out.push({ kind: 'dead', ts: c.ts, nodeId: c.nodeId });
        else if (!(reacted && ts >= c.ts)) keep.push(c);
      }
      this.undecided = keep;
    }
    const click = clickOf(e);
    if (!click) return out;
    if (click.hasXY) {
      const near = this.recent.filter((c) => ts - c.ts <= RAGE_WINDOW_MS && Math.hypot(c.x - click.x, c.y - click.y) <= RAGE_RADIUS_PX);
      if (near.length + 1 >= RAGE_CLICKS) {
        if (!this.inBurst) out.push({ kind: 'rage', ts, nodeId: click.id });
        this.inBurst = true;
      } else {
        this.inBurst = false;
      }
      this.recent = this.recent.filter((c) => ts - c.ts <= RAGE_WINDOW_MS).slice(-8);
      this.recent.push({ ts, x: click.x, y: click.y });
    }
    this.undecided.push({ ts, nodeId: click.id });
    if (this.undecided.length > 64) this.undecided.shift(); // a flood of clicks with no later event
    return out;
  }
}
