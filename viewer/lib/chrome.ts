// The page's chrome around the player: LIVE badge, delay label, Go live, status line and banner;
// what each shows follows from the page's state (machine.ts), set in one place.
import { report } from './hook';
import type { FeedState, ViewState } from './machine';

export interface ChromeUI {
  controls: HTMLElement;
  liveBadge: HTMLElement;
  latency: HTMLElement;
  goLive: HTMLButtonElement;
  status: HTMLElement;
  banner: HTMLElement;
}

export class Chrome {
  constructor(private readonly ui: ChromeUI) {}

  /** Shows what the state implies; `atEdge`: the live picture is on screen. */
  render(state: ViewState, atEdge: boolean, feed: FeedState | null): void {
    const { ui } = this;
    ui.liveBadge.hidden = !(state === 'edge' && feed !== null && feed !== 'connecting');
    ui.latency.hidden = state !== 'edge';
    ui.goLive.hidden = state !== 'rewound';
    ui.controls.classList.toggle('rewinding', !atEdge);
    const mode = atEdge ? 'live' : state === 'rewound' ? 'rewind' : 'replay';
    document.body.dataset.mode = mode;
    report({ mode, ended: state === 'ended' });
  }

  status(text: string): void {
    this.ui.status.textContent = text;
    this.ui.status.hidden = !text;
  }

  banner(text: string): void {
    this.ui.banner.textContent = text;
    this.ui.banner.hidden = !text;
  }
}
