// The "N ms delayed" label of the live view. Every live event has a new figure, written in the
// frame that shows the event (the label is the delay of what is on screen), so it writes only
// what changed: the data of two text nodes made once (the figure and its uncertainty), when the
// rounded value differs. It used to rebuild a span per event (issue 15, README).

/** Event -> screen delay and its uncertainty (ms), from the clocks (see SessionClocks.delay). */
export interface Delay {
  delay: number;
  uncertainty: number;
}

export class DelayLabel {
  private readonly figure = document.createTextNode('measuring…');
  private readonly plusMinus = document.createTextNode('');
  private shown = false;

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

function set(node: Text, text: string): void {
  if (node.data !== text) node.data = text;
}
