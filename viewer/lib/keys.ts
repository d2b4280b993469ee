// Keyboard shortcuts of the player: Space plays/pauses, ← / → move 5 s.

/** What the shortcuts act on; null while nothing on the page takes them. */
export interface KeyTarget {
  /** Space; false when there is nothing to play or pause (the key is left alone). */
  playPause(): boolean;
  /** ← / →: move by `ms`. */
  seekBy(ms: number): void;
}

/** Whether a keydown is ours: no modifier, not typing in a field, Space not on a focused button/link. */
function isShortcut(ev: KeyboardEvent): boolean {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return false;
  const t = ev.target as HTMLElement | null;
  // Typing in fields keeps its keys; a focused button/link keeps Space (it activates it).
  if (t && t.closest('input, textarea, select, [contenteditable]')) return false;
  if ((ev.key === ' ' || ev.code === 'Space') && t && t.closest('button, a')) return false;
  return true;
}

/** Routes the shortcuts to whatever `target()` returns at the time of the key press. */
export function bindPlayerKeys(target: () => KeyTarget | null): void {
  window.addEventListener('keydown', (ev) => {
    if (!isShortcut(ev)) return;
    const t = target();
    if (!t) return;
    if (ev.key === ' ' || ev.code === 'Space') {
      if (t.playPause()) ev.preventDefault();
    } else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
      ev.preventDefault();
      t.seekBy(ev.key === 'ArrowLeft' ? -5000 : 5000);
    }
  });
}
