// The "N ms delayed" label of the live view. Every live event has a new figure, measured when
// the event is applied (the label is the delay of what is on screen) but written at most once
// per animation frame, in the frame that paints the event: a burst of events in one frame
// (React sends a keystroke's Input event and its `value` mutation as two messages) writes the
// label once, and the message handler that applies an event writes nothing outside the
// replayer (issue 15: it wrote the label in every handler, before the iframe's change was
// seen). It writes only what changed: the data of two text nodes made once (the figure and its
// uncertainty), when the rounded value differs.

/** Event -> screen delay and its uncertainty (ms), from the clocks (see SessionClocks.delay). */
export interface Delay {
  delay: number;
  uncertainty: number;
}

export class DelayLabel {
  private readonly figure = document.createTextNode('measuring…');
  private readonly plusMinus = document.createTextNode('');
  private shown = false;
  /** The figure to write at the next frame, if any. */
  private pending: { figure: string; plusMinus: string; idle: boolean } | null = null;
  private frame = 0;

  constructor(private readonly el: HTMLElement) {
    const u = document.createElement('span');
    u.className = 'uncertainty';
    u.appendChild(this.plusMinus);
    el.replaceChildren(this.figure, u);
    el.title = 'waiting for the viewer and recorder clock offsets';
  }

  /** Whether a delay has been shown (the label then keeps the last one until the next). */
  get hasValue(): boolean {
    return this.shown || this.pending !== null;
  }

  /** Shows `d` from the next frame on; `idle` marks a delay measured on the session's last event before we joined. */
  show(d: Delay | null, idle = false): void {
    if (!d) return;
    const figure = `${Math.max(0, Math.round(d.delay))} ms delayed${idle ? ' (last event)' : ''}`;
    const plusMinus = ` ±${Math.round(d.uncertainty)} ms`;
    // The same text as on screen: no frame to ask for (a pending write is dropped: it is older).
    if (figure === this.figure.data && plusMinus === this.plusMinus.data && this.shown && !idle) {
      this.pending = null;
      return;
    }
    this.pending = { figure, plusMinus, idle };
    // A page in the background gets no frames: the last figure is written when it shows again.
    if (!this.frame) this.frame = requestAnimationFrame(() => this.write());
  }

  private write(): void {
    this.frame = 0;
    const p = this.pending;
    this.pending = null;
    if (!p) return;
    set(this.figure, p.figure);
    set(this.plusMinus, p.plusMinus);
    if (!this.shown || p.idle) {
      this.el.title = p.idle
        ? 'the session is idle: the delay of its last event (recorder → server, plus half our round trip)'
        : 'event → screen delay of the last event, ± the clock sync uncertainty';
    }
    this.shown = true;
  }
}

function set(node: Text, text: string): void {
  if (node.data !== text) node.data = text;
}
