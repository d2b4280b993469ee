// Multi-tab sessions: each page load records its own stream. The viewer follows the stream
// of the most recent full snapshot and ignores incremental events of the other streams.
// A Meta event (type 4) is held back until its stream's FullSnapshot (type 2) arrives, so
// a second tab's Meta does not resize the view of the first one.
import { EventType } from '@rrweb/types';
import type { StreamEvent } from './types';

export class StreamFollower {
  follow: string | null = null;
  private pendingMeta = new Map<string, StreamEvent>();

  /** Returns the events to apply (in order) for this arriving event; [] when ignored. */
  push(se: StreamEvent): StreamEvent[] {
    const t = se.event.type;
    if (t === EventType.Meta) {
      this.pendingMeta.set(se.streamId, se);
      return [];
    }
    if (t === EventType.FullSnapshot) {
      this.follow = se.streamId;
      const meta = this.pendingMeta.get(se.streamId);
      this.pendingMeta.delete(se.streamId);
      return meta ? [meta, se] : [se];
    }
    if (this.follow === null || se.streamId !== this.follow) return [];
    return [se];
  }

  reset(): void {
    this.follow = null;
    this.pendingMeta.clear();
  }
}

/**
 * Index in `list` where playback can start from the latest full snapshot: its Meta (within
 * the 50 events before it, same stream) or the snapshot itself; -1 if there is none.
 */
export function latestSnapshotStart(list: StreamEvent[]): number {
  for (let i = list.length - 1; i >= 0; i--) {
    if (list[i].event.type !== EventType.FullSnapshot) continue;
    for (let j = i - 1; j >= 0 && j >= i - 50; j--) {
      if (list[j].event.type === EventType.Meta && list[j].streamId === list[i].streamId) return j;
    }
    return i;
  }
  return -1;
}
