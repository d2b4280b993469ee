// The controls row: play/pause, a slider over the session (drag back to rewind while live),
// markers on it (errors, failed requests, rage and dead clicks, tab switches), speed (rewind and
// replay only: at the live edge there is nothing to speed up) and the time label.
// It redraws only while something moves, and writes the DOM only where a value changed: once a
// second at the live edge (the label counts seconds), 4 times a second while playing, never
// while paused (the old fixed 250 ms tick repainted the live page 4 times a second for nothing:
// issue 15, README).
import { formatDuration, h } from './format';
import type { Marker } from './session';

export interface TimelineUI {
  timeline: HTMLInputElement;
  timeLabel: HTMLElement;
  speed: HTMLSelectElement;
  speedBox: HTMLElement;
  playToggle: HTMLButtonElement;
  markers: HTMLElement;
}

/** What the timeline shows: the live edge, a replay or rewind, or nothing (its row is hidden). */
export type Position =
  | { at: 'edge'; edge: number } // ms since the session's first event
  | { at: 'replay'; current: number; total: number; playing: boolean; duration: number } // label: duration
  | null;

export interface TimelineHost {
  position(): Position;
  /** Go to `offset` (ms since the first event): rewinds from the live edge, seeks otherwise. */
  seek(offset: number): void;
  togglePlay(): void;
  setSpeed(speed: number): void;
  /** Offset of a timestamp (markers are stamped on the recorders' clocks). */
  offsetOf(ts: number): number;
  /** Called after each redraw with the shown offset (the event list follows it). */
  onDraw(offset: number, live: boolean): void;
}

/** Below the live edge by less than this, a slider release stays live. */
const EDGE_SLACK_MS = 1000;

export class Timeline {
  /** The PM is dragging: leave the slider where their hand is. */
  private busyUntil = 0;
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private tick: ReturnType<typeof setTimeout> | undefined;
  private markerList: Marker[] = [];
  private markersFor = -Infinity; // the total the markers were laid out for (-Infinity: redo)

  constructor(private readonly ui: TimelineUI, private readonly host: TimelineHost) {
    const { timeline, speed, playToggle } = ui;
    const busy = () => (this.busyUntil = performance.now() + 1500);
    timeline.addEventListener('pointerdown', busy);
    timeline.addEventListener('input', () => {
      busy();
      setText(ui.timeLabel, formatDuration(Number(timeline.value)));
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
    ui.markers.addEventListener('click', (ev) => {
      const m = (ev.target as HTMLElement).closest<HTMLElement>('[data-offset]');
      if (m) host.seek(Number(m.dataset.offset));
    });
  }

  /** The speed chosen for rewinds and replays. */
  get speed(): number {
    return Number(this.ui.speed.value) || 1;
  }

  setMarkers(list: readonly Marker[]): void {
    this.markerList = list.slice();
    this.markersFor = -Infinity;
    this.draw();
  }

  addMarker(m: Marker): void {
    this.markerList.push(m);
    this.markersFor = -Infinity;
  }

  private onSlider(): void {
    const v = Number(this.ui.timeline.value);
    const at = this.host.position()?.at;
    if (at === 'replay' || (at === 'edge' && v < Number(this.ui.timeline.max) - EDGE_SLACK_MS)) this.host.seek(v);
  }

  /** Redraws now and schedules the next redraw while something moves. */
  draw(): void {
    clearTimeout(this.tick);
    const pos = this.host.position();
    if (!pos) return;
    const { timeline, timeLabel, playToggle, speedBox } = this.ui;
    const busy = performance.now() < this.busyUntil;
    const total = pos.at === 'edge' ? pos.edge : pos.total;
    const current = pos.at === 'edge' ? pos.edge : pos.current;
    setProp(timeline, 'max', String(Math.round(total)));
    if (!busy) {
      setProp(timeline, 'value', String(Math.round(current)));
      setText(timeLabel, pos.at === 'edge' ? formatDuration(total) : `${formatDuration(Math.min(current, pos.duration))} / ${formatDuration(pos.duration)}`);
    }
    speedBox.hidden = pos.at === 'edge';
    playToggle.hidden = false;
    setText(playToggle, pos.at === 'replay' && pos.playing ? 'Pause' : pos.at === 'edge' ? 'Pause' : 'Play');
    if (Math.abs(total - this.markersFor) > Math.max(1000, total / 100)) this.layoutMarkers(total);
    this.host.onDraw(current, pos.at === 'edge');
    if (pos.at === 'edge') this.tick = setTimeout(() => this.draw(), 1000 - (pos.edge % 1000) + 5);
    else if (pos.playing) this.tick = setTimeout(() => this.draw(), 250);
  }

  private layoutMarkers(total: number): void {
    this.markersFor = total;
    const frag = document.createDocumentFragment();
    for (const m of this.markerList) {
      const off = Math.max(0, this.host.offsetOf(m.ts));
      const left = total > 0 ? Math.min(100, (100 * off) / total) : 0;
      frag.appendChild(
        h('span', {
          class: `sd-marker m-${m.kind}`,
          style: `left:${left.toFixed(2)}%`,
          title: `${formatDuration(off)} ${m.text}`,
          'data-testid': 'marker',
          'data-kind': m.kind,
          'data-offset': String(Math.round(off)),
        }),
      );
    }
    this.ui.markers.replaceChildren(frag);
  }
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

function setProp(el: HTMLInputElement, prop: 'max' | 'value', v: string): void {
  if (el[prop] !== v) el[prop] = v;
}
