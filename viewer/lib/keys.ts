// Keyboard shortcuts of the player, and the help panel (?) that lists them: SHORTCUTS is the one
// list both the handler and the panel read.
import { h } from './format';

/** What the shortcuts act on: the page's controller. */
export interface PlayerCommands {
  /** Play/pause (at the live edge: pause = rewind paused there). */
  togglePlay(): void;
  /** Go to `offset` (from the live edge: a rewind). */
  seek(offset: number): void;
  /** The moment on screen (the live edge while live). */
  moment(): number;
  /** Back to live (while rewound). */
  goLive(): void;
  /** Show a tab (null: follow the user). */
  pin(streamId: string | null): void;
  tabIds(): string[];
  /** Copy a link to the moment on screen. */
  share(): void;
}

export const SHORTCUTS: readonly [string, string][] = [
  ['Space', 'play / pause (at the live edge: pause here, a rewind)'],
  ['← / →', 'back / forward 5 s (Shift: 1 s)'],
  ['L', 'go live (while rewound)'],
  ['F', 'follow the user (show the tab they are in)'],
  ['1 – 9', 'show tab N (stops following)'],
  ['C', 'copy a link to this moment'],
  ['?', 'show / hide this help'],
  ['Esc', 'close this help'],
];

/** Whether a keydown is ours: no modifier, not typing in a field, Space not on a focused button/link. */
function isShortcut(ev: KeyboardEvent): boolean {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return false;
  const t = ev.target as HTMLElement | null;
  // Typing in fields keeps its keys; a focused button/link keeps Space (it activates it).
  if (t && t.closest('input:not([type=range]):not([type=checkbox]), textarea, select, [contenteditable]')) return false;
  if ((ev.key === ' ' || ev.code === 'Space') && t && t.closest('button, a')) return false;
  return true;
}

/** Routes the shortcuts to `c`; `help` is the panel that ? toggles. */
export function bindPlayerKeys(c: PlayerCommands, help: HTMLElement): void {
  help.replaceChildren(
    h('h2', {}, 'Keyboard shortcuts'),
    h('dl', {}, ...SHORTCUTS.flatMap(([k, what]) => [h('dt', {}, h('kbd', {}, k)), h('dd', {}, what)])),
  );
  help.setAttribute('role', 'dialog');
  help.dataset.testid = 'help';
  window.addEventListener('keydown', (ev) => {
    if (!isShortcut(ev)) return;
    if (ev.key === '?') {
      help.hidden = !help.hidden;
      ev.preventDefault();
      return;
    }
    if (ev.key === 'Escape' && !help.hidden) {
      help.hidden = true;
      return;
    }
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    let handled = true;
    if (ev.key === ' ' || ev.code === 'Space') c.togglePlay();
    else if (key === 'ArrowLeft' || key === 'ArrowRight') {
      c.seek(Math.max(0, c.moment() + (key === 'ArrowLeft' ? -1 : 1) * (ev.shiftKey ? 1000 : 5000)));
    } else if (ev.shiftKey) handled = false;
    else if (key === 'l') c.goLive();
    else if (key === 'f') c.pin(null);
    else if (key === 'c') c.share();
    else if (/^[1-9]$/.test(key) && c.tabIds()[Number(key) - 1] !== undefined) c.pin(c.tabIds()[Number(key) - 1]);
    else handled = false;
    if (handled) ev.preventDefault();
  });
}
