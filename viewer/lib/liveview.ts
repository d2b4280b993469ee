// The live edge: one LivePlayer showing one tab, "follow the user" (the tab of the latest user
// action, kinds.ts) unless the PM pinned a tab. Until the session's history is in the store,
// it can only switch to a tab whose full snapshot arrives on the feed; after, a switch rebuilds
// the tab from its latest full snapshot in the store (applied synchronously: one rebuild).
import { EventType } from '@rrweb/types';
import { LivePlayer } from './live';
import { isUserAction } from './kinds';
import type { SessionStore } from './session';
import type { RREvent, StreamEvent } from './types';

export class LiveView {
  readonly player: LivePlayer;
  /** The tab on screen, and the tab the user acts in. */
  shown: string | null = null;
  focus: string | null = null;
  private pinned: string | null = null;
  /** A Meta waits for its stream's FullSnapshot (so another tab's Meta does not resize this one). */
  private readonly pendingMeta = new Map<string, StreamEvent>();

  constructor(
    stage: HTMLElement,
    private readonly shift: (se: StreamEvent) => number,
    private readonly store: () => SessionStore | null,
    private readonly onShow: () => void,
  ) {
    this.player = new LivePlayer(stage);
  }

  /**
   * An event from the feed (after the store took it, once the store is loaded); `sync` for the
   * backlog. Returns whether it was applied to the picture.
   */
  push(se: StreamEvent, sync: boolean): boolean {
    const e = se.event;
    if (isUserAction(e) && this.focus !== se.streamId) {
      this.focus = se.streamId;
      this.onShow();
    }
    if (e.type === EventType.Meta) {
      this.pendingMeta.set(se.streamId, se);
      return false;
    }
    const want = this.pinned ?? this.focus ?? se.streamId;
    if (want !== this.shown && this.switchTo(want, se)) return true;
    if (se.streamId !== this.shown) return false;
    if (e.type === EventType.FullSnapshot) {
      const meta = this.pendingMeta.get(se.streamId);
      this.pendingMeta.delete(se.streamId);
      if (meta) this.player.apply(meta.event, this.shift(meta), sync);
    }
    this.player.apply(e, this.shift(se), sync);
    return true;
  }

  /** Show `streamId` (null: follow the user) and rebuild the picture if that changes the tab. */
  pin(streamId: string | null): void {
    this.pinned = streamId;
    const want = streamId ?? this.focus;
    if (want !== null && want !== this.shown) this.switchTo(want, null);
  }

  /** Rebuilds from the store's events of `streamId` (true), or from `se` if it is the tab's snapshot. */
  private switchTo(streamId: string, se: StreamEvent | null): boolean {
    const tab = this.store()?.tabs.get(streamId);
    const from = tab ? latestSnapshot(tab.events) : -1;
    if (tab && from >= 0) {
      this.shown = streamId;
      for (const e of tab.events.slice(from)) this.player.apply(e, this.shift({ streamId, seq: 0, event: e }), true);
      this.player.flush();
      this.onShow();
      return se === null || se.streamId === streamId;
    }
    if (se && se.streamId === streamId && se.event.type === EventType.FullSnapshot) {
      this.shown = streamId; // the caller applies it (with its Meta)
      this.onShow();
    }
    return false;
  }

  destroy(): void {
    this.player.destroy();
  }
}

/** Index of a tab's latest full snapshot (its Meta just before it, if any); -1 if none. */
export function latestSnapshot(events: readonly RREvent[]): number {
  for (let i = events.length - 1; i >= 0; i--) {
    if (events[i].type !== EventType.FullSnapshot) continue;
    return i > 0 && events[i - 1].type === EventType.Meta ? i - 1 : i;
  }
  return -1;
}
