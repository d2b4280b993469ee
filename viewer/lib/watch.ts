// The session player page: watch a live session (live view, rewind, ended -> replay) or replay
// a finished one. Owns the view region of the page's state machine (machine.ts); the live
// feed (feed.ts) owns the other.
import { LivePlayer } from './live';
import { RewindPlayer } from './rewind';
import { ReplayView } from './replay';
import { StreamFollower } from './streams';
import { CLOSE_UNKNOWN_SESSION, WatchFeed, type FeedListener } from './feed';
import { loadAllEvents } from './api';
import { Timeline, type Position, type TimelineHost, type TimelineUI } from './timeline';
import { bindPlayerKeys, type KeyTarget } from './keys';
import { Machine, VIEW, watchState, type FeedEvent, type ViewAction, type ViewEvent, type ViewState, type WatchState } from './machine';
import { hook, report } from './hook';
import { showDelay } from './latency';
import type { SessionInfo, StreamEvent } from './types';

export interface PlayerUI extends TimelineUI {
  stage: HTMLElement; // live / rewind replayer root
  replay: HTMLElement; // rrweb-player root for a finished session
  controls: HTMLElement; // timeline row (live + rewind)
  liveBadge: HTMLElement;
  latency: HTMLElement;
  goLive: HTMLButtonElement;
  status: HTMLElement;
  banner: HTMLElement;
}

/** The player on screen: exactly one at a time. */
type View =
  | { kind: 'live'; player: LivePlayer }
  | { kind: 'rewind'; player: RewindPlayer }
  | { kind: 'replay'; player: ReplayView };

/** How long a session that was watched live may be without its recorder before it counts as ended. */
const RECORDER_GRACE_MS = 15000;

export class PlayerController implements FeedListener, TimelineHost {
  private view: View;
  private readonly machine: Machine<ViewState, ViewEvent, ViewAction>;
  private readonly feed: WatchFeed | null = null;
  private readonly timeline: Timeline;
  /** While the history for a rewind loads: the live events that arrive meanwhile. */
  private rewindQueue: StreamEvent[] | null = null;
  /** The server has said at least once that the session is live (so a drop may be a reconnect). */
  private seenLive = false;
  /** Running while the recorder may still come back (hello with live: false after being live). */
  private graceTimer: ReturnType<typeof setTimeout> | undefined;

  /** `startAt`: for a finished session, the offset to open at (paused), or null to autoplay. */
  constructor(private readonly info: SessionInfo, private readonly ui: PlayerUI, startAt: number | null) {
    this.timeline = new Timeline(ui, this);
    const actions = {
      showLive: () => this.showLive(),
      showRewind: (e: ViewEvent) => this.showRewind(e),
      showReplay: () => this.showReplay('end'),
      bannerEnded: () => this.setBanner('Session ended'),
      bannerLiveAgain: () => this.setBanner('The session is live again.'),
    };
    if (info.live) {
      this.view = { kind: 'live', player: new LivePlayer(ui.stage) };
      this.machine = new Machine(VIEW, 'edge', actions, () => this.render());
      this.feed = new WatchFeed(info, this);
    } else {
      this.view = this.replayView(startAt);
      this.machine = new Machine(VIEW, 'replay', actions, () => this.render());
    }
    ui.goLive.addEventListener('click', () => this.machine.send({ type: 'go-live' }));
    bindPlayerKeys(() => this.keys());
    report({ currentTime: () => this.currentTime() });
    this.render();
  }

  /** The page's state: connecting | live | caught-up | rewound | ended | replay. */
  get state(): WatchState {
    return watchState(this.machine.state, this.feed?.state ?? 'connecting');
  }

  /** Replay/rewind position in ms from the first event (null while live). */
  currentTime(): number | null {
    return this.view.kind === 'live' ? null : this.view.player.currentTime();
  }

  // ---- the feed ------------------------------------------------------------------------

  onEvent(se: StreamEvent, shown: StreamEvent[]): void {
    const view = this.view;
    if (view.kind === 'live') for (const x of shown) this.applyLive(view.player, x);
    else if (view.kind === 'rewind') view.player.add(se);
    this.rewindQueue?.push(se);
  }

  onFeed(event: FeedEvent): void {
    if (event.type === 'open' && this.graceTimer === undefined) this.setStatus('');
    if (event.type === 'caughtup' && this.view.kind === 'live') this.view.player.flush();
    if (event.type === 'down') {
      if (event.code === CLOSE_UNKNOWN_SESSION) this.setStatus('This session is no longer known to the server.');
      else if (this.state !== 'ended' || this.view.kind !== 'replay') this.setStatus('Connection lost — reconnecting…');
    }
    this.render();
  }

  onHello(live: boolean): void {
    if (!live) {
      // Ended, unless we were watching it live: then give the recorder time to come back.
      if (!this.seenLive || this.state === 'ended') this.onEnded();
      else {
        this.setStatus('Waiting for the recorder to reconnect…');
        if (this.graceTimer === undefined) this.graceTimer = setTimeout(() => this.onEnded(), RECORDER_GRACE_MS);
      }
      return;
    }
    this.seenLive = true;
    if (this.graceTimer !== undefined) this.setStatus('');
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.onLiveAgain();
  }

  onEnded(): void {
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.machine.send({ type: 'ended' });
  }

  onLiveAgain(): void {
    this.machine.send({ type: 'live-again' });
  }

  private applyLive(player: LivePlayer, se: StreamEvent): void {
    const clocks = this.feed!.clocks;
    player.apply(se.event, clocks.shift(se), this.feed!.state !== 'caught-up');
    const appliedAt = performance.now();
    const wall = Date.now();
    const rec = clocks.recorder(se.streamId);
    const d = clocks.delay(se, wall);
    const shownBefore = hook.lastDelayMs !== null;
    report({
      lastAppliedAt: appliedAt,
      lastAppliedWallMs: wall,
      appliedCount: hook.appliedCount + 1,
      lastEventTimestamp: se.event.timestamp,
      lastStreamId: se.streamId,
      lastSeq: se.seq,
      lastRecvAt: se.recvAt ?? null,
      recorderOffset: rec ? rec.offset : null,
      recorderRtt: rec ? rec.rtt : null,
      ...(d && { lastDelayMs: d.delay, uncertaintyMs: d.uncertainty }),
    });
    showDelay(this.ui.latency, d, shownBefore);
  }

  // ---- the views (actions of the VIEW table) ---------------------------------------------

  /** Back to the live edge: a fresh live replayer, brought up to date with the backlog. */
  private showLive(): void {
    this.view.player.destroy();
    this.setBanner('');
    const player = new LivePlayer(this.ui.stage);
    this.view = { kind: 'live', player };
    const clocks = this.feed!.clocks;
    const backlog = this.feed!.backlog;
    for (const se of backlog) player.apply(se.event, clocks.shift(se), true);
    if (backlog.length) player.flush();
  }

  private showRewind(e: ViewEvent): void {
    if (e.type !== 'rewind-loaded') return;
    this.view.player.destroy();
    this.view = { kind: 'rewind', player: e.player };
    for (const se of this.rewindQueue ?? []) e.player.add(se);
    e.player.play(e.offset);
    this.setStatus('');
  }

  private showReplay(startAt: number | 'end'): void {
    this.view.player.destroy();
    this.ui.stage.style.height = '';
    this.view = this.replayView(startAt);
  }

  private replayView(startAt: number | 'end' | null): View {
    const player = new ReplayView(this.ui.replay, this.info.id, { startAt, onStatus: (t) => this.setStatus(t) });
    player.load().catch((err) => {
      console.error(err);
      this.setStatus('Could not load the session events.');
    });
    return { kind: 'replay', player };
  }

  // ---- controls (TimelineHost and keys) ------------------------------------------------

  position(): Position {
    const view = this.view;
    if (view.kind === 'live') return { at: 'edge', edge: this.feed!.liveEdge() };
    if (view.kind === 'rewind') {
      const p = view.player;
      return { at: 'rewind', current: p.currentTime(), total: p.totalTime(), playing: p.playing };
    }
    return null;
  }

  /** From the live edge, load the history and rewind to `offset`; in a rewind, seek. */
  seek(offset: number): void {
    if (this.view.kind === 'rewind') this.view.player.seek(offset);
    else if (this.machine.state === 'edge' && !this.rewindQueue) void this.loadRewind(offset);
  }

  private async loadRewind(offset: number): Promise<void> {
    this.rewindQueue = [];
    this.setStatus('Loading history…');
    try {
      const events = await loadAllEvents(this.info.id);
      if (this.machine.state !== 'edge') return; // the session ended meanwhile: the replay view took over
      const player = new RewindPlayer(this.ui.stage, events, new StreamFollower(), this.timeline.speed, () =>
        this.machine.send({ type: 'go-live' }),
      );
      if (!this.machine.send({ type: 'rewind-loaded', player, offset })) player.destroy();
    } catch (err) {
      console.error(err);
      this.setStatus('Could not load the session history.');
    } finally {
      this.rewindQueue = null;
      this.render();
    }
  }

  togglePlay(): void {
    const view = this.view;
    if (view.kind !== 'rewind') return;
    if (view.player.playing) view.player.pause();
    else view.player.play();
    this.render();
  }

  setSpeed(speed: number): void {
    if (this.view.kind === 'rewind') this.view.player.setSpeed(speed);
  }

  private keys(): KeyTarget | null {
    const view = this.view;
    if (view.kind === 'replay') return view.player.keys();
    if (view.kind === 'rewind') {
      return {
        playPause: () => (this.togglePlay(), true),
        seekBy: (ms) => view.player.seek(view.player.currentTime() + ms),
      };
    }
    return {
      playPause: () => false, // nothing to pause at the live edge
      seekBy: (ms) => {
        if (ms < 0) this.seek(Math.max(0, this.feed!.liveEdge() + ms));
      },
    };
  }

  // ---- what the page shows -------------------------------------------------------------

  /** Everything on screen that follows from the state (run after each transition). */
  private render(): void {
    const { ui } = this;
    const kind = this.view.kind;
    const state = this.machine.state;
    ui.stage.hidden = kind === 'replay';
    ui.controls.hidden = kind === 'replay';
    ui.replay.hidden = kind !== 'replay';
    ui.liveBadge.hidden = !(state === 'edge' && this.feed?.state !== 'connecting');
    ui.latency.hidden = state !== 'edge';
    ui.goLive.hidden = state !== 'rewound';
    ui.playToggle.hidden = kind !== 'rewind';
    ui.controls.classList.toggle('rewinding', kind === 'rewind');
    document.body.dataset.mode = kind;
    report({ mode: kind, ended: state === 'ended' });
    this.timeline.draw();
  }

  private setStatus(text: string): void {
    this.ui.status.textContent = text;
    this.ui.status.hidden = !text;
  }

  private setBanner(text: string): void {
    this.ui.banner.textContent = text;
    this.ui.banner.hidden = !text;
  }
}
