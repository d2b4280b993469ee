// Everything recorded in one session, per tab (stream), and what the player derives from it:
// the event list's items, the timeline's markers (errors, rage and dead clicks, tab switches)
// and which tab the user was in at any moment. The one owner of the session's history: the
// replay/rewind player, the tab bar, the event list and the timeline all read it.
// Events come in stream order (the history from /events, then the live feed): duplicates
// (seq at or below what a stream already has) are dropped, so the two may overlap.
import { EventType, IncrementalSource } from '@rrweb/types';
import { clickOf, customKind, customOf, describeCustom, failureOf, inputOf, isUserAction, type Kind, type MarkerKind } from './kinds';
import { NodeIndex } from './nodes';
import { loadEventPages } from './api';
import { ClickSignals, type Signal } from './signals';
import { isObject, type RREvent, type StreamEvent } from './types';

export interface Tab {
  id: string;
  /** The page URL of its latest page load. */
  href: string;
  /** Timestamps (recorder clock) of its first and last events. */
  first: number;
  last: number;
  events: RREvent[];
  seq: number;
}

export interface Item {
  kind: Kind;
  streamId: string;
  ts: number;
  text: string;
  /** For inputs: the field, so keystrokes in one field make one item. */
  nodeId?: number;
}

export interface Marker {
  kind: MarkerKind;
  ts: number;
  streamId: string;
  text: string;
}

export interface StoreListener {
  /** A new item at `index` of items (usually the end), or an item changed in place. */
  item?(item: Item, index: number, changed: boolean): void;
  marker?(m: Marker): void;
  /** A tab appeared or its URL changed. */
  tabs?(): void;
}

export class SessionStore {
  readonly tabs = new Map<string, Tab>();
  readonly items: Item[] = [];
  readonly markers: Marker[] = [];
  /** When the user moved to another tab: [ts, streamId], in time order. */
  readonly switches: { ts: number; streamId: string }[] = [];
  /** Timestamp of the session's first event: offsets on the timeline count from it. */
  origin: number | null = null;
  /** Timestamp of the latest event of any stream. */
  latest = 0;
  private readonly nodes = new Map<string, NodeIndex>();
  private readonly signals = new Map<string, ClickSignals>();
  private readonly listeners: StoreListener[] = [];
  /** Live events that arrive before the history is in (load() takes them after it); null once it is. */
  private queue: StreamEvent[] | null;

  /** `live`: events will also arrive live, from before load() starts until after it ends. */
  constructor(live: boolean) {
    this.queue = live ? [] : null;
  }

  /** Whether the history is in (a live session's store holds live events back until then). */
  get complete(): boolean {
    return this.queue === null;
  }

  listen(l: StoreListener): void {
    this.listeners.push(l);
  }

  /** Loads the session's recorded events (all pages), saying how far it got; false if that failed. */
  async load(id: string, status: (text: string) => void): Promise<boolean> {
    status('Loading events…');
    try {
      let n = 0;
      await loadEventPages(id, (page, last) => {
        for (const se of page) this.add(se);
        n += page.length;
        status(last ? '' : `Loading events… ${n}`);
      });
      for (const se of this.queue ?? []) this.add(se);
      this.queue = null;
      return true;
    } catch (err) {
      console.error(err);
      status('Could not load the session events.');
      return false;
    }
  }

  /** A live event: held back until the history is in; true if the store took it now as new. */
  addLive(se: StreamEvent): boolean {
    if (!this.queue) return this.add(se);
    this.queue.push(se);
    return false;
  }

  /** Takes one event (in its stream's order); false if the stream already had it. */
  add(se: StreamEvent): boolean {
    const e = se.event;
    let tab = this.tabs.get(se.streamId);
    if (tab && se.seq <= tab.seq) return false;
    // Before a new tab is announced, so that listeners see the session's start it brings.
    if (this.origin === null || e.timestamp < this.origin) this.origin = e.timestamp;
    if (!tab) {
      tab = { id: se.streamId, href: '', first: e.timestamp, last: e.timestamp, events: [], seq: 0 };
      this.insertTab(tab);
      this.nodes.set(se.streamId, new NodeIndex());
      this.signals.set(se.streamId, new ClickSignals());
      this.emitTabs();
    }
    tab.seq = se.seq;
    tab.events.push(e);
    tab.last = Math.max(tab.last, e.timestamp);
    this.latest = Math.max(this.latest, e.timestamp);
    this.derive(tab, e);
    return true;
  }

  /** Offset (ms from the session's first event) of a timestamp. */
  offset(ts: number): number {
    return ts - (this.origin ?? ts);
  }

  /** The tab the user was in at timestamp `ts` (the first tab before any action). */
  focusAt(ts: number): string | null {
    const s = this.switches;
    let lo = 0;
    let hi = s.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid].ts <= ts) (found = mid), (lo = mid + 1);
      else hi = mid - 1;
    }
    if (found >= 0) return s[found].streamId;
    return s[0]?.streamId ?? this.tabs.keys().next().value ?? null;
  }

  /** The first tab switch stamped after `ts`, if any. */
  nextSwitch(ts: number): number | null {
    const s = this.switches;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid].ts <= ts) lo = mid + 1;
      else hi = mid;
    }
    return s[lo]?.ts ?? null;
  }

  private derive(tab: Tab, e: RREvent): void {
    const nodes = this.nodes.get(tab.id)!;
    if (e.type === EventType.Meta && isObject(e.data)) {
      tab.href = String(e.data.href ?? '');
      this.emitTabs();
    } else if (e.type === EventType.FullSnapshot && isObject(e.data)) {
      nodes.snapshot(e.data.node);
      // A page load is listed at its snapshot: seeking there shows the page (at its Meta, nothing yet).
      this.addItem({ kind: 'page', streamId: tab.id, ts: e.timestamp, text: tab.href });
    } else if (e.type === EventType.IncrementalSnapshot && isObject(e.data)) {
      if (e.data.source === IncrementalSource.Mutation) nodes.mutation(e.data);
      const click = clickOf(e);
      if (click) {
        // The recorder's own text for the control (masked by its privacy options), else our mirror's.
        const text = click.text ? `"${click.text.slice(0, 60)}" (${nodes.label(click.id, false)})` : nodes.label(click.id);
        this.addItem({ kind: 'click', streamId: tab.id, ts: e.timestamp, text, nodeId: click.id });
      }
      const input = inputOf(e);
      if (input) this.addInput(tab.id, e.timestamp, input.id, input.text, nodes);
    } else {
      const c = customOf(e);
      const kind = c && customKind(c.tag);
      if (c && kind) this.addItem({ kind, streamId: tab.id, ts: e.timestamp, text: describeCustom(c.tag, c.payload) });
      const failure = c && failureOf(c.tag, c.payload);
      if (c && failure) this.addMarker({ kind: failure, ts: e.timestamp, streamId: tab.id, text: describeCustom(c.tag, c.payload) });
    }
    this.signalMarkers(tab.id, this.signals.get(tab.id)!.push(e));
    if (isUserAction(e) && this.switches[this.switches.length - 1]?.streamId !== tab.id) {
      this.switches.push({ ts: e.timestamp, streamId: tab.id });
      if (this.switches.length > 1) this.addMarker({ kind: 'switch', ts: e.timestamp, streamId: tab.id, text: `to ${tab.href || 'another tab'}` });
    }
  }

  private signalMarkers(streamId: string, signals: Signal[]): void {
    const nodes = this.nodes.get(streamId);
    for (const s of signals) {
      const what = nodes ? nodes.label(s.nodeId) : '';
      this.addMarker({ kind: s.kind, ts: s.ts, streamId, text: `${s.kind} click ${what}` });
    }
  }

  /** Keystrokes into one field, one after another, are one item showing the latest text. */
  private addInput(streamId: string, ts: number, nodeId: number, text: string, nodes: NodeIndex): void {
    const last = this.items[this.items.length - 1];
    if (last && last.kind === 'input' && last.streamId === streamId && last.nodeId === nodeId) {
      last.text = `${nodes.label(nodeId)}: ${text}`;
      last.ts = ts;
      for (const l of this.listeners) l.item?.(last, this.items.length - 1, true);
      return;
    }
    this.addItem({ kind: 'input', streamId, ts, text: `${nodes.label(nodeId)}: ${text}`, nodeId });
  }

  private addItem(item: Item): void {
    const i = insertAt(this.items, item.ts);
    this.items.splice(i, 0, item);
    for (const l of this.listeners) l.item?.(item, i, false);
  }

  private addMarker(m: Marker): void {
    this.markers.push(m);
    for (const l of this.listeners) l.marker?.(m);
  }

  /** Keeps tabs in the order the user opened them (their first events' times), whichever
   * stream's events the server happened to send first. */
  private insertTab(tab: Tab): void {
    const later = [...this.tabs.values()].filter((t) => t.first > tab.first);
    for (const t of later) this.tabs.delete(t.id);
    this.tabs.set(tab.id, tab);
    for (const t of later) this.tabs.set(t.id, t);
  }

  private emitTabs(): void {
    for (const l of this.listeners) l.tabs?.();
  }
}

/** Where an entry stamped `ts` goes in a list sorted by ts (after equal ones). */
export function insertAt(list: readonly { ts: number }[], ts: number): number {
  let i = list.length;
  while (i > 0 && list[i - 1].ts > ts) i--;
  return i;
}
