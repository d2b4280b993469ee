// The "N ms delayed" label of the live view. Every live event has a new figure, and every write
// to the page costs a style recalc and a layout of it on top of the replayed page's own, in the
// frame that shows the event (issue 15, README). So it writes only what changed, in two text
// nodes made once (the figure and its uncertainty; it used to rebuild a span per event), and at
// most 4 times a second: the latest figure at once if the last write is 250 ms old, else when
// it is (a person cannot read faster; automation reads window.__streamdom, updated per event).

/** Event -> screen delay and its uncertainty (ms), from the clocks (see SessionClocks.delay). */
export interface Delay {
  delay: number;
  uncertainty: number;
}

export class DelayLabel {
  private readonly figure = document.createTextNode('measuring…');
  private readonly plusMinus = document.createTextNode('');
  private shown = false;
  private lastWrite = -Infinity;
  private pending: { d: Delay; idle: boolean } | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly el: HTMLElement) {
    const u = document.createElement('span');
    u.className = 'uncertainty';
    u.appendChild(this.plusMinus);
    el.replaceChildren(this.figure, u);
    el.title = 'waiting for the viewer and recorder clock offsets';
  }

  /** Whether a delay has been shown (the label then keeps the last one until the next). */
  get hasValue(): boolean {
    return this.shown;
  }

  /** Shows `d`; `idle` marks a delay measured on the session's last event before we joined. */
  show(d: Delay | null, idle = false): void {
    if (!d) return;
    this.pending = { d, idle };
    const wait = this.lastWrite + MIN_INTERVAL_MS - performance.now();
    if (wait <= 0) this.write();
    else if (this.timer === undefined) this.timer = setTimeout(() => this.write(), wait);
  }

  private write(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const p = this.pending;
    this.pending = null;
    if (!p) return;
    this.lastWrite = performance.now();
    const { d, idle } = p;
    set(this.figure, `${Math.max(0, Math.round(d.delay))} ms delayed${idle ? ' (last event)' : ''}`);
    set(this.plusMinus, ` ±${Math.round(d.uncertainty)} ms`);
    if (!this.shown || idle) {
      this.el.title = idle
        ? 'the session is idle: the delay of its last event (recorder → server, plus half our round trip)'
        : 'event → screen delay of the last event, ± the clock sync uncertainty';
    }
    this.shown = true;
  }
}

const MIN_INTERVAL_MS = 250;

function set(node: Text, text: string): void {
  if (node.data !== text) node.data = text;
}
