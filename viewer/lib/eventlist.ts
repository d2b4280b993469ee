// The event list beside the player: page loads (per tab), clicks (the element's text or
// selector), inputs (as recorded: masked), errors, console, network and custom events. A click
// on an item seeks to it; the item at the shown moment is highlighted and kept in view (live,
// rewind and replay), unless the PM's pointer is on the list; filter chips hide kinds (by CSS:
// nothing is rebuilt). Items arrive from the store one at a time: no full re-render. While live
// they are written at most once per animation frame, in the frame that paints the events that
// made them: each keystroke changes its field's item, and writing it in the message handler
// (rebuilding the item's four spans) was the player's largest own cost per live event (issue 15);
// an item that changes only rewrites the text that did.
import { KINDS } from './kinds';
import { formatDuration, h } from './format';
import type { Item, SessionStore } from './session';

export interface EventListHost {
  /** Seek to the item's moment (from the live edge: rewind to it). */
  seek(offset: number): void;
  /** 1-based tab number of a stream, for sessions with several tabs. */
  tabNumber(streamId: string): number;
}

export class EventList {
  private readonly list: HTMLOListElement;
  private current: HTMLElement | null = null;
  private hovered = false;
  private readonly els: HTMLLIElement[] = [];
  private pending: { item: Item; index: number; changed: boolean }[] = [];
  private frame = 0;

  constructor(root: HTMLElement, private readonly store: SessionStore, private readonly host: EventListHost) {
    const chips = h('div', { class: 'ev-filters', role: 'group', 'aria-label': 'Show kinds' });
    for (const kind of KINDS) {
      const box = h('input', { type: 'checkbox', 'data-filter': kind });
      box.checked = true;
      box.addEventListener('change', () => root.classList.toggle(`hide-${kind}`, !box.checked));
      chips.append(h('label', { class: `chip k-${kind}` }, box, kind));
    }
    this.list = h('ol', { class: 'ev-items' });
    this.list.addEventListener('click', (ev) => {
      const li = (ev.target as HTMLElement).closest<HTMLLIElement>('li[data-offset]');
      if (li) host.seek(Number(li.dataset.offset));
    });
    this.list.addEventListener('pointerenter', () => (this.hovered = true));
    this.list.addEventListener('pointerleave', () => (this.hovered = false));
    root.replaceChildren(chips, this.list);
    root.dataset.testid = 'event-list';
    for (let i = 0; i < store.items.length; i++) this.write(store.items[i], i, false);
    let drawnFor = this.layoutKey();
    const tabs = () => {
      root.classList.toggle('single-tab', store.tabs.size < 2);
      // A tab opened earlier than those already shown renumbers the tabs and may move the
      // session's start: redraw the items' numbers and offsets (tabs appear rarely).
      const key = this.layoutKey();
      if (key === drawnFor) return;
      drawnFor = key;
      this.flush();
      for (let i = 0; i < this.els.length; i++) this.write(store.items[i], i, true);
    };
    tabs();
    store.listen({ item: (item, index, changed) => this.onItem(item, index, changed), tabs });
  }

  /** What the items' tab numbers and offsets depend on. */
  private layoutKey(): string {
    return `${[...this.store.tabs.keys()].join(' ')}@${this.store.origin}`;
  }

  /** The store's news: written at the next frame (or when follow() needs the list as it is). */
  private onItem(item: Item, index: number, changed: boolean): void {
    this.pending.push({ item, index, changed });
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Writes what the store said since the last write, in its order (indices are the store's then). */
  private flush(): void {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const ops = this.pending;
    this.pending = [];
    for (const op of ops) this.write(op.item, op.index, op.changed);
  }

  private write(item: Item, index: number, changed: boolean): void {
    if (!changed) {
      const li = h(
        'li',
        { 'data-testid': 'event' },
        h('span', { class: 'ev-time mono' }),
        h('span', { class: 'ev-kind' }),
        h('span', { class: 'ev-text' }),
        h('span', { class: 'ev-tab muted' }),
      );
      this.list.insertBefore(li, this.els[index] ?? null);
      this.els.splice(index, 0, li);
    }
    const li = this.els[index];
    if (!li) return;
    const offset = Math.round(this.store.offset(item.ts));
    const [time, kind, text, tab] = li.children as unknown as HTMLElement[];
    setData(li, 'kind', item.kind);
    setData(li, 'offset', String(offset));
    const cls = `ev k-${item.kind}`;
    if (li.className !== cls) li.className = cls;
    setText(time, formatDuration(offset));
    setText(kind, item.kind);
    setText(text, item.text);
    if (text.title !== item.text) text.title = item.text;
    setText(tab, `tab ${this.host.tabNumber(item.streamId)}`);
  }

  /** Highlights the last item at or before `offset` and scrolls it into view. */
  follow(offset: number): void {
    this.flush();
    const items = this.store.items;
    const ts = (this.store.origin ?? 0) + offset;
    let lo = 0;
    let hi = items.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (items[mid].ts <= ts) (found = mid), (lo = mid + 1);
      else hi = mid - 1;
    }
    const el = found >= 0 ? this.els[found] : null;
    if (el === this.current) return;
    this.current?.classList.remove('current');
    this.current = el;
    if (!el) return;
    el.classList.add('current');
    // Scroll the list only (scrollIntoView would scroll the page too); the list is the offsetParent.
    const list = this.list;
    if (!this.hovered && (el.offsetTop < list.scrollTop || el.offsetTop + el.offsetHeight > list.scrollTop + list.clientHeight)) {
      list.scrollTop = el.offsetTop - list.clientHeight / 2;
    }
  }
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

function setData(el: HTMLElement, key: string, value: string): void {
  if (el.dataset[key] !== value) el.dataset[key] = value;
}
