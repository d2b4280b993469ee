// Live session controller: WS /watch/<id>, live replayer, rewind, ended -> replay.
import { NtpClock, Pinger, type ClockSample } from './clock';
import { ReconnectingSocket } from './ws';
import { LivePlayer } from './live';
import { RewindPlayer } from './rewind';
import { ReplayView } from './replay';
import { StreamFollower } from './streams';
import { fetchJSON, httpClockSkew, loadEventPages, wsURL } from './api';
import { formatDuration } from './format';
import { hook } from './hook';
import { EV_FULL_SNAPSHOT, EV_META, isObject, type SessionInfo, type StreamEvent, type WatchMessage } from './types';

export interface LiveUI {
  stage: HTMLElement; // live / rewind replayer root
  replay: HTMLElement; // rrweb-player root after the session ended
  controls: HTMLElement; // timeline row (live + rewind)
  liveBadge: HTMLElement;
  latency: HTMLElement;
  timeline: HTMLInputElement;
  timeLabel: HTMLElement;
  speed: HTMLSelectElement;
  playToggle: HTMLButtonElement;
  goLive: HTMLButtonElement;
  status: HTMLElement;
  banner: HTMLElement;
}

export class LiveController {
  private mode: 'live' | 'rewind' | 'replay' = 'live';
  private readonly socket: ReconnectingSocket;
  private readonly viewerClock = new NtpClock();
  private readonly pinger: Pinger;
  private readonly recClocks = new Map<string, ClockSample>();
  private readonly follower = new StreamFollower();
  /** Events of the followed stream from its latest full snapshot on: rebuilds the live view. */
  private buf: StreamEvent[] = [];
  private readonly shifts = new Map<string, number>();
  private caughtUp = false;
  private ended = false;
  private liveAgain = false;
  private live: LivePlayer | null = null;
  private rewind: RewindPlayer | null = null;
  private rewindLoading = false;
  private rewindQueue: StreamEvent[] = [];
  private replay: ReplayView | null = null;
  private everLive = false;
  private endTimer: ReturnType<typeof setTimeout> | undefined;
  private bootstrapping = false;
  private bootQueue: StreamEvent[] = [];
  private sliderBusyUntil = 0;
  private firstTs: number | null = null;
  private lastEvent: { ts: number; wall: number } | null = null;
  private sliderTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly info: SessionInfo, private readonly ui: LiveUI) {
    this.pinger = new Pinger((m) => this.socket.send(m), this.viewerClock, () => this.onViewerClock());
    this.enterLive([]);
    this.socket = new ReconnectingSocket(wsURL('/watch/' + encodeURIComponent(info.id)), {
      onOpen: () => {
        hook.connected = true;
        if (this.endTimer === undefined) this.setStatus('');
        this.pinger.start();
        this.refreshBadges();
      },
      onMessage: (m) => this.onMessage(m),
      onDown: (ev) => {
        hook.connected = false;
        if (ev?.code === 4404) {
          this.socket.close();
          this.setStatus('This session is no longer known to the server.');
          return;
        }
        this.pinger.stop();
        if (!this.ended || this.mode !== 'replay') this.setStatus('Connection lost — reconnecting…');
        this.refreshBadges();
      },
    });
    this.bindControls();
    setInterval(() => this.tick(), 250);
    void this.fetchFirstTimestamp();
    hook.currentTime = () => (this.rewind ? this.rewind.currentTime() : this.replay ? this.replay.currentTime() : null);
  }

  // ---- socket --------------------------------------------------------------------------

  private onMessage(raw: unknown): void {
    if (!isObject(raw) || typeof raw.type !== 'string') return;
    const msg = raw as unknown as WatchMessage;
    switch (msg.type) {
      case 'event':
        if (isObject(msg.event)) this.onEvent(msg);
        break;
      case 'hello':
        this.resetLive();
        if (msg.live === false) this.onNotLive();
        else {
          this.everLive = true;
          if (this.endTimer !== undefined) this.setStatus('');
          clearTimeout(this.endTimer);
          this.endTimer = undefined;
          if (this.ended) this.onLiveAgain();
        }
        break;
      case 'resync':
        hook.resyncs++;
        this.resetLive();
        break;
      case 'caughtup':
        if (this.follower.follow === null && !this.bootstrapping) {
          // The server's memory has no full snapshot (e.g. it restarted and the recorder only
          // resent unacknowledged events): start from the latest snapshot in the archive.
          void this.bootstrapFromArchive();
          break;
        }
        this.caughtUp = true;
        hook.caughtUp = true;
        this.live?.flush();
        this.refreshBadges();
        break;
      case 'clock':
        if (typeof msg.offset === 'number' && typeof msg.rtt === 'number') {
          this.recClocks.set(String(msg.streamId), { offset: msg.offset, rtt: msg.rtt });
          this.onViewerClock();
        }
        break;
      case 'ended':
        this.onEnded();
        break;
      case 'live':
        this.onLiveAgain();
        break;
      case 'pong':
        this.pinger.handlePong(msg);
        break;
    }
  }

  /**
   * A (re)connection or resync: the server resends from the latest full snapshot. The live
   * replayer is kept (so the last picture stays up instead of a blank frame); the Meta +
   * FullSnapshot that open the backlog rebuild its document and reset its node mirror.
   */
  private resetLive(): void {
    this.follower.reset();
    this.buf = [];
    this.shifts.clear();
    this.caughtUp = false;
    hook.caughtUp = false;
  }

  private onEvent(se: StreamEvent): void {
    if (this.bootstrapping) {
      this.bootQueue.push(se);
      return;
    }
    const out = this.follower.push(se);
    if (se.streamId === this.follower.follow) this.lastEvent = { ts: se.event.timestamp, wall: Date.now() };
    if (out.length && (out[out.length - 1].event.type as number) === EV_FULL_SNAPSHOT) this.buf = out.slice();
    else for (const x of out) this.buf.push(x);
    if (this.mode === 'live' && this.live) for (const x of out) this.applyLive(x);
    if (this.rewind) this.rewind.add(se);
    else if (this.rewindLoading) this.rewindQueue.push(se);
  }

  private async bootstrapFromArchive(): Promise<void> {
    this.bootstrapping = true;
    this.bootQueue = [];
    const list: StreamEvent[] = [];
    try {
      await loadEventPages(this.info.id, (page) => {
        for (const se of page) list.push(se);
      });
    } catch (err) {
      console.error(err);
    }
    // From the Meta before the last full snapshot on.
    let start = -1;
    for (let i = list.length - 1; i >= 0; i--) {
      if ((list[i].event.type as number) === EV_FULL_SNAPSHOT) {
        start = i;
        for (let j = i - 1; j >= 0 && j >= i - 50; j--) {
          if ((list[j].event.type as number) === EV_META && list[j].streamId === list[i].streamId) {
            start = j;
            break;
          }
        }
        break;
      }
    }
    const maxSeq = new Map<string, number>();
    this.bootstrapping = false;
    if (start >= 0) {
      for (const se of list.slice(start)) {
        maxSeq.set(se.streamId, Math.max(maxSeq.get(se.streamId) ?? 0, se.seq));
        this.onEvent(se);
      }
    }
    for (const se of this.bootQueue) if (se.seq > (maxSeq.get(se.streamId) ?? 0)) this.onEvent(se);
    this.bootQueue = [];
    this.caughtUp = true;
    hook.caughtUp = true;
    this.live?.flush();
    this.refreshBadges();
  }

  /** hello with live:false: ended — unless we were watching it live, then give the recorder time. */
  private onNotLive(): void {
    if (!this.everLive || this.ended) {
      this.onEnded();
      return;
    }
    this.setStatus('Waiting for the recorder to reconnect…');
    if (this.endTimer === undefined) this.endTimer = setTimeout(() => this.onEnded(), 15000);
  }

  /** Per-stream constant mapping recorder clock -> viewer clock. */
  private shiftFor(se: StreamEvent): number {
    let s = this.shifts.get(se.streamId);
    if (s === undefined) {
      const rec = this.recClocks.get(se.streamId);
      const vo = this.viewerClock.best;
      s = rec && vo ? rec.offset - vo.offset : Date.now() - se.event.timestamp;
      this.shifts.set(se.streamId, s);
    }
    return s;
  }

  private applyLive(se: StreamEvent): void {
    if (!this.live) return;
    this.live.apply(se.event, this.shiftFor(se), !this.caughtUp);
    hook.lastAppliedAt = performance.now();
    hook.lastAppliedWallMs = Date.now();
    hook.appliedCount++;
    hook.lastEventTimestamp = se.event.timestamp;
    hook.lastStreamId = se.streamId;
    hook.lastSeq = se.seq;
    hook.lastRecvAt = se.recvAt ?? null;
    this.updateLatency(se, hook.lastAppliedWallMs);
  }

  private updateLatency(se: StreamEvent, appliedWall: number): void {
    const vo = this.viewerClock.best;
    const rec = this.recClocks.get(se.streamId);
    hook.recorderOffset = rec ? rec.offset : null;
    hook.recorderRtt = rec ? rec.rtt : null;
    if (!vo || !rec) {
      this.showLatency(null, null);
      return;
    }
    const delay = appliedWall + vo.offset - (se.event.timestamp + rec.offset);
    const unc = (vo.rtt + rec.rtt) / 2;
    hook.lastDelayMs = delay;
    hook.uncertaintyMs = unc;
    this.showLatency(delay, unc);
  }

  private showLatency(delay: number | null, unc: number | null): void {
    const el = this.ui.latency;
    if (delay === null || unc === null) {
      if (hook.lastDelayMs === null) {
        el.textContent = 'measuring…';
        el.title = 'waiting for the viewer and recorder clock offsets';
      }
      return;
    }
    const shown = Math.max(0, Math.round(delay));
    el.textContent = `${shown} ms delayed`;
    const u = document.createElement('span');
    u.className = 'uncertainty';
    u.textContent = ` ±${Math.round(unc)} ms`;
    el.appendChild(u);
    el.title = `event → screen delay ${delay.toFixed(1)} ms, uncertainty ±${unc.toFixed(1)} ms (clock sync)`;
  }

  private onViewerClock(): void {
    const vo = this.viewerClock.best;
    hook.viewerOffset = vo ? vo.offset : null;
    hook.viewerRtt = vo ? vo.rtt : null;
    const follow = this.follower.follow;
    const rec = follow !== null ? this.recClocks.get(follow) : undefined;
    if (rec) {
      hook.recorderOffset = rec.offset;
      hook.recorderRtt = rec.rtt;
    }
  }

  private serverNow(): number {
    return Date.now() + (this.viewerClock.best?.offset ?? httpClockSkew);
  }

  /** Now, on the followed recorder's clock (the clock replay offsets are measured in). */
  private recorderNow(): number {
    const follow = this.follower.follow;
    const rec = follow !== null ? this.recClocks.get(follow) : undefined;
    if (rec) return this.serverNow() - rec.offset;
    if (this.lastEvent) return this.lastEvent.ts + (Date.now() - this.lastEvent.wall);
    return this.serverNow();
  }

  /** The live edge as an offset from the session's first event (what the replayer uses). */
  private liveEdge(): number {
    const first = this.firstTs ?? this.info.started_at - (this.recClocks.get(this.follower.follow ?? '')?.offset ?? 0);
    return Math.max(0, this.recorderNow() - first);
  }

  /** The first event's timestamp, so the live timeline maps onto replay offsets exactly. */
  private async fetchFirstTimestamp(): Promise<void> {
    try {
      const { data } = await fetchJSON<unknown[]>(`/api/sessions/${encodeURIComponent(this.info.id)}/events?limit=1`);
      const first = Array.isArray(data) ? data[0] : undefined;
      if (isObject(first) && typeof first.timestamp === 'number') this.firstTs = first.timestamp;
    } catch {
      // keep the started_at estimate
    }
  }

  // ---- modes ---------------------------------------------------------------------------

  /** Builds a fresh live replayer and brings it to the live edge with the kept events. */
  private enterLive(events: StreamEvent[]): void {
    this.mode = 'live';
    hook.mode = 'live';
    this.ui.replay.hidden = true;
    this.ui.stage.hidden = false;
    this.ui.controls.hidden = false;
    this.live = new LivePlayer(this.ui.stage);
    for (const se of events) this.live.apply(se.event, this.shiftFor(se), true);
    if (events.length) this.live.flush();
    this.refreshBadges();
  }

  private goLive(): void {
    if (this.mode === 'live') return;
    this.rewind?.destroy();
    this.rewind = null;
    this.replay?.destroy();
    this.replay = null;
    this.liveAgain = false;
    this.setBanner(this.ended ? 'Session ended' : '');
    this.enterLive(this.buf);
  }

  private async enterRewind(offset: number): Promise<void> {
    if (this.mode === 'rewind' && this.rewind) {
      this.rewind.seek(offset);
      return;
    }
    if (this.rewindLoading || this.mode === 'replay') return;
    this.rewindLoading = true;
    this.rewindQueue = [];
    this.setStatus('Loading history…');
    const list: StreamEvent[] = [];
    try {
      await loadEventPages(this.info.id, (page) => {
        for (const se of page) list.push(se);
      });
      if (this.mode !== 'live') return; // the session ended meanwhile: the replay view took over
      this.live?.destroy();
      this.live = null;
      this.mode = 'rewind';
      hook.mode = 'rewind';
      const speed = Number(this.ui.speed.value) || 1;
      this.rewind = new RewindPlayer(this.ui.stage, list, new StreamFollower(), speed, () => {
        if (!this.ended && this.mode === 'rewind') this.goLive();
      });
      for (const se of this.rewindQueue) this.rewind.add(se);
      this.rewind.play(offset);
      this.setStatus('');
    } catch (err) {
      console.error(err);
      this.setStatus('Could not load the session history.');
      if (!this.live) this.enterLive(this.buf);
    } finally {
      this.rewindLoading = false;
      this.rewindQueue = [];
      this.refreshBadges();
    }
  }

  private onEnded(): void {
    clearTimeout(this.endTimer);
    this.endTimer = undefined;
    if (this.ended) return;
    this.ended = true;
    hook.ended = true;
    this.liveAgain = false;
    this.setBanner('Session ended');
    if (this.mode === 'live') this.switchToReplay();
    this.refreshBadges();
  }

  private onLiveAgain(): void {
    if (!this.ended) return;
    this.ended = false;
    hook.ended = false;
    this.liveAgain = true;
    this.setBanner('The session is live again.');
    this.refreshBadges();
  }

  private switchToReplay(): void {
    this.live?.destroy();
    this.live = null;
    this.mode = 'replay';
    hook.mode = 'replay';
    this.ui.stage.hidden = true;
    this.ui.stage.style.height = '';
    this.ui.controls.hidden = true;
    this.ui.replay.hidden = false;
    this.replay = new ReplayView(this.ui.replay, this.info.id, { startAt: 'end', onStatus: (t) => this.setStatus(t) });
    this.replay.load().catch((err) => {
      console.error(err);
      this.setStatus('Could not load the session events.');
    });
  }

  // ---- controls ------------------------------------------------------------------------

  private bindControls(): void {
    const { timeline, speed, playToggle, goLive } = this.ui;
    const busy = () => (this.sliderBusyUntil = performance.now() + 1500);
    timeline.addEventListener('pointerdown', busy);
    timeline.addEventListener('input', () => {
      busy();
      this.ui.timeLabel.textContent = formatDuration(Number(timeline.value));
      clearTimeout(this.sliderTimer);
      this.sliderTimer = setTimeout(() => this.onSlider(), this.mode === 'live' ? 400 : 150);
    });
    timeline.addEventListener('change', () => {
      busy();
      clearTimeout(this.sliderTimer);
      this.onSlider();
    });
    speed.addEventListener('change', () => this.rewind?.setSpeed(Number(speed.value) || 1));
    playToggle.addEventListener('click', () => this.togglePlay());
    goLive.addEventListener('click', () => this.goLive());
    window.addEventListener('keydown', (ev) => this.onKey(ev));
  }

  private onSlider(): void {
    const v = Number(this.ui.timeline.value);
    if (this.mode === 'live') {
      if (v < Number(this.ui.timeline.max) - 1000) void this.enterRewind(v);
    } else if (this.mode === 'rewind' && this.rewind) {
      this.rewind.seek(v);
    }
  }

  private togglePlay(): void {
    if (!this.rewind) return;
    if (this.rewind.playing) this.rewind.pause();
    else this.rewind.play();
    this.refreshBadges();
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey || this.mode === 'replay') return;
    const t = ev.target as HTMLElement | null;
    // Typing in fields keeps its keys; a focused button/link keeps Space (it activates it).
    if (t && t.closest('input, textarea, select, [contenteditable]')) return;
    if ((ev.key === ' ' || ev.code === 'Space') && t && t.closest('button, a')) return;
    if (ev.key === ' ' && this.mode === 'rewind') {
      ev.preventDefault();
      this.togglePlay();
    } else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
      ev.preventDefault();
      const d = ev.key === 'ArrowLeft' ? -5000 : 5000;
      if (this.mode === 'rewind' && this.rewind) this.rewind.seek(this.rewind.currentTime() + d);
      else if (this.mode === 'live' && d < 0) void this.enterRewind(Math.max(0, this.liveEdge() + d));
    }
  }

  private tick(): void {
    const { timeline, timeLabel } = this.ui;
    const busy = performance.now() < this.sliderBusyUntil;
    if (this.mode === 'live') {
      const edge = this.liveEdge();
      timeline.max = String(Math.round(edge));
      if (!busy) {
        timeline.value = timeline.max;
        timeLabel.textContent = formatDuration(edge);
      }
    } else if (this.mode === 'rewind' && this.rewind) {
      const total = this.rewind.totalTime();
      timeline.max = String(Math.round(total));
      if (!busy) {
        const cur = this.rewind.currentTime();
        timeline.value = String(Math.round(cur));
        timeLabel.textContent = `${formatDuration(cur)} / ${formatDuration(total)}`;
      }
      const label = this.rewind.playing ? 'Pause' : 'Play';
      if (this.ui.playToggle.textContent !== label) this.ui.playToggle.textContent = label;
    }
  }

  private refreshBadges(): void {
    const atEdge = this.mode === 'live' && !this.ended && hook.connected;
    this.ui.liveBadge.hidden = !atEdge;
    this.ui.latency.hidden = this.mode !== 'live' || this.ended;
    this.ui.goLive.hidden = !((this.mode === 'rewind' && !this.ended) || (this.mode === 'replay' && this.liveAgain));
    this.ui.playToggle.hidden = this.mode !== 'rewind';
    this.ui.controls.classList.toggle('rewinding', this.mode === 'rewind');
    document.body.dataset.mode = this.mode;
    this.tick();
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
