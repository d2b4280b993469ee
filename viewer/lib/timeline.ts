// The timeline row of the live player: a slider over the session so far (drag back to
// rewind), play/pause and speed while rewound, and the time label; redrawn 4 times a second.
import { formatDuration } from './format';

export interface TimelineUI {
  timeline: HTMLInputElement;
  timeLabel: HTMLElement;
  speed: HTMLSelectElement;
  playToggle: HTMLButtonElement;
}

/** What the timeline shows: the live edge, a rewind, or nothing (its row is hidden). */
export type Position =
  | { at: 'edge'; edge: number } // ms since the session's first event
  | { at: 'rewind'; current: number; total: number; playing: boolean }
  | null;

export interface TimelineHost {
  position(): Position;
  /** Go to `offset` (ms since the first event): rewinds from the live edge, seeks in a rewind. */
  seek(offset: number): void;
  togglePlay(): void;
  setSpeed(speed: number): void;
}

/** Below the live edge by less than this, a slider release stays live. */
const EDGE_SLACK_MS = 1000;

export class Timeline {
  /** The PM is dragging: leave the slider where their hand is. */
  private busyUntil = 0;
  private debounce: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly ui: TimelineUI, private readonly host: TimelineHost) {
    const { timeline, speed, playToggle } = ui;
    const busy = () => (this.busyUntil = performance.now() + 1500);
    timeline.addEventListener('pointerdown', busy);
    timeline.addEventListener('input', () => {
      busy();
      ui.timeLabel.textContent = formatDuration(Number(timeline.value));
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => this.onSlider(), host.position()?.at === 'edge' ? 400 : 150);
    });
    timeline.addEventListener('change', () => {
      busy();
      clearTimeout(this.debounce);
      this.onSlider();
    });
    speed.addEventListener('change', () => host.setSpeed(this.speed));
    playToggle.addEventListener('click', () => host.togglePlay());
    setInterval(() => this.draw(), 250);
  }

  /** The speed chosen for rewinds. */
  get speed(): number {
    return Number(this.ui.speed.value) || 1;
  }

  private onSlider(): void {
    const v = Number(this.ui.timeline.value);
    const at = this.host.position()?.at;
    if (at === 'rewind' || (at === 'edge' && v < Number(this.ui.timeline.max) - EDGE_SLACK_MS)) this.host.seek(v);
  }

  /** Redraws the slider and labels from the host's position. */
  draw(): void {
    const pos = this.host.position();
    if (!pos) return;
    const { timeline, timeLabel, playToggle } = this.ui;
    const busy = performance.now() < this.busyUntil;
    if (pos.at === 'edge') {
      timeline.max = String(Math.round(pos.edge));
      if (!busy) {
        timeline.value = timeline.max;
        timeLabel.textContent = formatDuration(pos.edge);
      }
    } else {
      timeline.max = String(Math.round(pos.total));
      if (!busy) {
        timeline.value = String(Math.round(pos.current));
        timeLabel.textContent = `${formatDuration(pos.current)} / ${formatDuration(pos.total)}`;
      }
      const label = pos.playing ? 'Pause' : 'Play';
      if (playToggle.textContent !== label) playToggle.textContent = label;
    }
  }
}
