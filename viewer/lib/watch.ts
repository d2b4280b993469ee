// The session player page: watch a live session (live edge, rewind, ended) or replay a finished
// one, every tab of it. Owns the view region of the page's state machine (machine.ts); the live
// feed (feed.ts) owns the other, the store (session.ts) owns the session's history.
import { LiveView } from './liveview';
import { ReplayPlayer } from './engine';
import { SessionStore } from './session';
import { CLOSE_UNKNOWN_SESSION, WatchFeed, type FeedListener } from './feed';
import { getSession } from './api';
import { Timeline, type Position, type TimelineHost, type TimelineUI } from './timeline';
import { EventList } from './eventlist';
import { TabBar, type TabState } from './tabs';
import { bindPlayerKeys } from './keys';
import { Machine, VIEW, type FeedEvent, type ViewAction, type ViewEvent, type ViewState } from './machine';
import { report } from './hook';
import { LiveStatus } from './livestatus';
import { Chrome, type ChromeUI } from './chrome';
import { durationOf, type SessionInfo, type StreamEvent } from './types';

export interface PlayerUI extends TimelineUI, ChromeUI {
  stage: HTMLElement; // the replayer's root (live, rewind and replay)
  share: HTMLButtonElement;
  tabs: HTMLElement;
  events: HTMLElement;
  help: HTMLElement;
}

/** What is on screen: the live edge, or a replay (a rewind of a live session, or a finished one). */
type View = { kind: 'live'; live: LiveView } | { kind: 'replay'; player: ReplayPlayer };

export class PlayerController implements FeedListener, TimelineHost {
  private readonly store: SessionStore;
  private view: View;
  private readonly machine: Machine<ViewState, ViewEvent, ViewAction>;
  private readonly feed: WatchFeed | null = null;
  private readonly timeline: Timeline;
  private readonly tabBar: TabBar;
  private readonly eventList: EventList;
  private readonly liveStatus: LiveStatus | null = null;
  private readonly chrome: Chrome;
  private pinned: string | null = null;
  /** Where to open (?t=), once the history is in; 'end' for a session that ended while watched. */
  private startAt: number | 'end' | null;
  private loadingHistory = false;

  constructor(private info: SessionInfo, private readonly ui: PlayerUI, startAt: number | null, private readonly onInfo: (i: SessionInfo) => void) {
    this.startAt = startAt;
    this.store = new SessionStore(info.live);
    this.chrome = new Chrome(ui);
    this.timeline = new Timeline(ui, this);
    this.tabBar = new TabBar(ui.tabs, this.store, this);
    this.eventList = new EventList(ui.events, this.store, { seek: (t) => this.seek(t), tabNumber: (id) => this.tabBar.number(id) });
    this.store.listen({ marker: (m) => this.timeline.addMarker(m), tabs: () => this.tabBar.draw() });
    const actions = {
      showLive: () => this.showLive(),
      showRewind: (e: ViewEvent) => this.showRewind(e),
      showReplay: () => this.showEnded(),
      bannerEnded: () => this.chrome.banner('Session ended'),
      bannerLiveAgain: () => this.chrome.banner('The session is live again.'),
    };
    if (info.live) {
      this.feed = new WatchFeed(info, this);
      this.liveStatus = new LiveStatus(ui.latency, this.feed);
      this.view = { kind: 'live', live: this.newLive() };
      this.machine = new Machine(VIEW, 'edge', actions, () => this.render());
    } else {
      this.view = { kind: 'replay', player: this.newReplay() };
      this.machine = new Machine(VIEW, 'replay', actions, () => this.render());
      this.ensureHistory();
    }
    ui.goLive.addEventListener('click', () => this.goLive());
    bindPlayerKeys(this, ui.help);
    report({ currentTime: () => this.currentTime() });
    this.render();
  }

  /** Position in ms from the session's first event (null at the live edge). */
  currentTime(): number | null {
    return this.view.kind === 'live' ? null : this.view.player.currentTime();
  }

  /** The moment on screen (the live edge while live), for share links. */
  moment(): number {
    return this.currentTime() ?? this.liveEdge();
  }

  // ---- history -------------------------------------------------------------------------

  /** Loads the history, once. */
  private ensureHistory(): void {
    if (this.loadingHistory) return;
    this.loadingHistory = true;
    void this.loadHistory();
  }

  private async loadHistory(): Promise<void> {
    // Live, the picture is already up: load the history quietly (the event list fills in).
    const quiet = this.view.kind === 'live';
    if (!(await this.store.load(this.info.id, (t) => (!quiet || t.startsWith('Could')) && this.chrome.status(t)))) return;
    if (this.feed && this.store.origin !== null) this.feed.clocks.firstTimestamp = this.store.origin;
    if (this.store.tabs.size === 0) this.chrome.status('Nothing to replay: this session has no events.');
    const at = this.startAt;
    this.startAt = null;
    if (this.view.kind === 'live') {
      if (typeof at === 'number') this.chrome.status('');
      this.view.live.pin(this.pinned); // every tab is now in the store: follow can switch
      if (typeof at === 'number') this.rewindTo(at, false);
    } else if (this.machine.state === 'replay' || this.machine.state === 'ended') {
      const p = this.view.player;
      if (at === null) p.play(0);
      else p.seek(at === 'end' ? this.end() : at);
    }
    this.render();
  }

  // ---- the feed ------------------------------------------------------------------------

  onEvent(se: StreamEvent): void {
    const view = this.view;
    if (this.store.addLive(se) && view.kind === 'replay') view.player.add(se); // a rewind goes on receiving
    if (view.kind === 'live' && view.live.push(se, this.feed!.state !== 'caught-up')) this.liveStatus!.applied(se);
  }

  onFeed(event: FeedEvent): void {
    if (event.type === 'open' && !this.feed!.waiting) this.chrome.status('');
    if (event.type === 'caughtup') {
      if (this.view.kind === 'live') this.view.live.player.flush();
      this.liveStatus!.caughtUp();
      this.ensureHistory(); // after the backlog: history + what follows leave no gap
    }
    if (event.type === 'down') {
      if (event.code === CLOSE_UNKNOWN_SESSION) this.chrome.status('This session is no longer known to the server.');
      else if (event.code === 1000 && this.machine.state === 'ended') this.feed!.close(); // not live: nothing will come
      else if (this.machine.state !== 'ended') this.chrome.status('Connection lost — reconnecting…');
    }
    this.render();
  }

  onClock(): void {
    this.liveStatus?.clock();
  }

  onEnded(): void {
    this.machine.send({ type: 'ended' });
    getSession(this.info.id).then((i) => {
      this.info = i;
      this.onInfo(i);
      this.render();
    }, () => {});
  }

  onStatus(text: string): void {
    this.chrome.status(text);
  }

  onLiveAgain(): void {
    this.machine.send({ type: 'live-again' });
  }

  // ---- the views (actions of the VIEW table) ---------------------------------------------

  private newLive(): LiveView {
    const feed = this.feed!;
    return new LiveView(this.ui.stage, (se) => feed.clocks.shift(se), () => (this.store.complete ? this.store : null), () => this.tabBar.draw());
  }

  private newReplay(): ReplayPlayer {
    return new ReplayPlayer({
      skipIdle: !this.info.live || this.machine?.state === 'ended',
      stage: this.ui.stage,
      store: this.store,
      speed: this.timeline.speed,
      end: () => this.end(),
      onEnd: () => {
        if (this.machine.state === 'rewound') this.chrome.status('Caught up with live: Go live (L) to follow it.');
        this.render();
      },
      onShow: () => this.tabBar.draw(),
    });
  }

  /** Back to the live edge: a fresh live replayer, brought up to date from the store. */
  private showLive(): void {
    this.destroyView();
    this.chrome.banner('');
    this.chrome.status('');
    const live = this.newLive();
    this.view = { kind: 'live', live };
    if (!this.store.complete) for (const se of this.feed!.backlog) live.push(se, true);
    else live.pin(this.pinned);
    live.player.flush();
  }

  private showRewind(e: ViewEvent): void {
    if (e.type !== 'rewind-loaded') return;
    this.destroyView();
    this.view = { kind: 'replay', player: e.player };
    e.player.pin(this.pinned);
    if (e.play) e.player.play(e.offset);
    else e.player.seek(e.offset);
  }

  /** The session ended at the live edge: the replay view at its last frame. */
  private showEnded(): void {
    this.destroyView();
    this.chrome.status('');
    const player = this.newReplay();
    this.view = { kind: 'replay', player };
    player.pin(this.pinned);
    if (this.store.complete) {
      player.seek(this.end());
      return;
    }
    // A moment asked for (?t=) still holds; else the last frame. The session may have ended
    // before the feed caught up (it was live when the page asked): no backlog will come.
    this.startAt ??= 'end';
    this.ensureHistory();
  }

  private destroyView(): void {
    if (this.view.kind === 'live') this.view.live.destroy();
    else this.view.player.destroy();
  }

  private rewindTo(offset: number, play: boolean): void {
    const player = this.newReplay();
    if (!this.machine.send({ type: 'rewind-loaded', player, offset, play })) player.destroy();
  }

  goLive(): void {
    this.machine.send({ type: 'go-live' });
  }

  // ---- controls (TimelineHost, tabs, keys) ------------------------------------------------

  private liveEdge(): number {
    return this.feed ? this.feed.liveEdge() : 0;
  }

  /** The end of the timeline: the live edge while live, else the session's length. */
  private end(): number {
    const s = this.machine?.state;
    if (this.feed && (s === 'edge' || s === 'rewound')) return this.liveEdge();
    const span = this.store.origin === null ? 0 : this.store.latest - this.store.origin;
    return Math.max(span, this.info.live ? 0 : durationOf(this.info));
  }

  /** The duration the page shows: the summary's duration_ms (one duration everywhere). */
  duration(): number {
    return this.info.live ? this.end() : durationOf(this.info);
  }

  position(): Position {
    const view = this.view;
    if (view.kind === 'live') return { at: 'edge', edge: this.liveEdge() };
    const p = view.player;
    const total = this.end();
    const duration = this.machine.state === 'rewound' ? total : this.duration();
    return { at: 'replay', current: p.currentTime(), total, playing: p.playing, duration };
  }

  offsetOf(ts: number): number {
    return this.store.offset(ts);
  }

  onDraw(offset: number, live: boolean): void {
    this.eventList.follow(live ? Infinity : offset);
    this.tabBar.draw();
  }

  /** From the live edge, rewind to `offset`; in a replay, seek. */
  seek(offset: number): void {
    this.chrome.status('');
    if (this.view.kind === 'replay') this.view.player.seek(offset);
    else if (!this.store.complete) {
      this.startAt = offset; // opens there once the history is in
      this.chrome.status('Loading history…');
    }
    else this.rewindTo(offset, true);
    this.render();
  }

  togglePlay(): void {
    const view = this.view;
    if (view.kind === 'live' && this.store.complete) this.rewindTo(this.liveEdge(), false); // pause here
    else if (view.kind === 'live') this.seek(this.liveEdge()); // once the history is in
    else if (view.player.playing) view.player.pause();
    else view.player.play();
    this.render();
  }

  setSpeed(speed: number): void {
    if (this.view.kind === 'replay') this.view.player.setSpeed(speed);
  }

  tabState(): TabState {
    const v = this.view;
    const feed = this.machine.state === 'ended' ? null : this.feed;
    return {
      shown: v.kind === 'live' ? v.live.shown : v.player.tab,
      focus: v.kind === 'live' ? v.live.focus : this.store.focusAt((this.store.origin ?? 0) + v.player.currentTime()),
      following: this.pinned === null,
      isLive: (id) => !!feed && feed.connectedRecently(id),
    };
  }

  pin(streamId: string | null): void {
    this.pinned = streamId;
    if (this.view.kind === 'live') this.view.live.pin(streamId);
    else this.view.player.pin(streamId);
    this.tabBar.draw();
  }

  /** The tabs' stream ids, in order (keys 1-9). */
  tabIds(): string[] {
    return [...this.store.tabs.keys()];
  }

  share(): void {
    this.ui.share.click();
  }

  // ---- what the page shows -------------------------------------------------------------

  /** Everything on screen that follows from the state (run after each transition). */
  private render(): void {
    this.chrome.render(this.machine.state, this.view.kind === 'live', this.feed?.state ?? null);
    this.timeline.draw();
    this.tabBar.draw();
  }

}
