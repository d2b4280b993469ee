// The "N ms delayed" label of the live view.

/** Event -> screen delay and its uncertainty (ms), from the clocks (see SessionClocks.delay). */
export interface Delay {
  delay: number;
  uncertainty: number;
}

/** Shows `d`; without one (clocks not known yet) "measuring…", unless a delay was shown before. */
export function showDelay(el: HTMLElement, d: Delay | null, shownBefore: boolean): void {
  if (!d) {
    if (!shownBefore) {
      el.textContent = 'measuring…';
      el.title = 'waiting for the viewer and recorder clock offsets';
    }
    return;
  }
  el.textContent = `${Math.max(0, Math.round(d.delay))} ms delayed`;
  const u = document.createElement('span');
  u.className = 'uncertainty';
  u.textContent = ` ±${Math.round(d.uncertainty)} ms`;
  el.appendChild(u);
  el.title = `event → screen delay ${d.delay.toFixed(1)} ms, uncertainty ±${d.uncertainty.toFixed(1)} ms (clock sync)`;
}
