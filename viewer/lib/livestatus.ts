// The live edge's delay label and the automation hook's live figures. Each applied live event
// updates them; a session that is idle when we join shows the delay of its last event (recorder
// → server from the server's receive stamp, plus half our round trip to the server) instead of
// "measuring…" forever.
import { DelayLabel } from './latency';
import { hook, report } from './hook';
import type { WatchFeed } from './feed';
import type { StreamEvent } from './types';

export class LiveStatus {
  private readonly label: DelayLabel;
  /** The latest event seen (backlog included), for the idle estimate. */
  private last: StreamEvent | null = null;
  private live = false;

  constructor(el: HTMLElement, private readonly feed: WatchFeed) {
    this.label = new DelayLabel(el);
  }

  /** `se` was just applied to the live picture. */
  applied(se: StreamEvent): void {
    this.last = se;
    if (this.feed.state !== 'caught-up') return; // backlog: old events say nothing about the delay now
    this.live = true;
    const clocks = this.feed.clocks;
    const appliedAt = performance.now();
    const wall = Date.now();
    const rec = clocks.recorder(se.streamId);
    const d = clocks.delay(se, wall);
    report({
      lastAppliedAt: appliedAt,
      lastAppliedWallMs: wall,
      appliedCount: hook.appliedCount + 1,
      lastEventTimestamp: se.event.timestamp,
      lastStreamId: se.streamId,
      lastSeq: se.seq,
      lastRecvAt: se.recvAt ?? null,
      recorderOffset: rec ? rec.offset : null,
      recorderRtt: rec ? rec.rtt : null,
      ...(d && { lastDelayMs: d.delay, uncertaintyMs: d.uncertainty }),
    });
    this.label.show(d);
  }

  caughtUp(): void {
    this.idle();
  }

  clock(): void {
    this.idle();
  }

  /** Until a live event shows, the delay the last event had when the server got it. */
  private idle(): void {
    const se = this.last;
    const vo = this.feed.clocks.viewer.best;
    const rec = se && this.feed.clocks.recorder(se.streamId);
    if (this.live || !se || !vo || !rec || se.recvAt === undefined) return;
    const delay = se.recvAt - (se.event.timestamp + rec.offset) + vo.rtt / 2;
    this.label.show({ delay, uncertainty: (vo.rtt + rec.rtt) / 2 }, true);
  }
}
