// The live feed of one session: WS /watch/<id> (docs/PROTOCOL.md), its clock sync, and the
// events of the followed stream from its latest full snapshot on (what the live view is
// rebuilt from). Owns the feed region of the page's state machine (see machine.ts).
import { Pinger, SessionClocks } from './clock';
import { ReconnectingSocket } from './ws';
import { StreamFollower, latestSnapshotStart } from './streams';
import { firstEventTimestamp, loadAllEvents, wsURL } from './api';
import { FEED, Machine, type FeedAction, type FeedEvent, type FeedState } from './machine';
import { hook, report } from './hook';
import { EventType } from '@rrweb/types';
import { isObject, type SessionInfo, type StreamEvent, type WatchMessage } from './types';

export const CLOSE_UNKNOWN_SESSION = 4404;
/** How long a session that was watched live may be without its recorder before it counts as ended. */
const RECORDER_GRACE_MS = 15000;
/** A tab not heard from for this long has no live dot. */
const TAB_SILENT_MS = 25000;

/** What the feed tells the page. */
export interface FeedListener {
  /** An event arrived; `shown` are the events the live view applies for it (the follow rule). */
  onEvent(se: StreamEvent, shown: StreamEvent[]): void;
  /** The feed's state changed on `event` (see FEED in machine.ts). */
  onFeed(event: FeedEvent): void;
  /** The session ended (the server says so, or its recorder did not come back in time) / is live again. */
  onEnded(): void;
  onLiveAgain(): void;
  /** A line for the status area ('' clears it). */
  onStatus(text: string): void;
  /** A clock estimate (ours or a recorder's) arrived. */
  onClock(): void;
}

export class WatchFeed {
  readonly clocks: SessionClocks;
  private readonly machine: Machine<FeedState, FeedEvent, FeedAction>;
  private readonly socket: ReconnectingSocket;
  private readonly pinger: Pinger;
  private readonly follower = new StreamFollower();
  /** Events of the followed stream from its latest full snapshot on. */
  private events: StreamEvent[] = [];
  /** The server has said at least once that the session is live (so a drop may be a reconnect). */
  private seenLive = false;
  /** Running while the recorder may still come back (hello with live: false after being live). */
  private graceTimer: ReturnType<typeof setTimeout> | undefined;
  private hasEnded = false;
  /** Per stream: when we last heard from its recorder (an event or a clock frame; wall ms). */
  private readonly heardAt = new Map<string, number>();
  /** While the backlog comes from the archive instead (see bootstrap()): what arrives meanwhile. */
  private bootQueue: StreamEvent[] | null = null;

  constructor(private readonly info: SessionInfo, private readonly listener: FeedListener) {
    this.clocks = new SessionClocks(info.started_at);
    this.machine = new Machine(FEED, 'connecting', { reset: () => this.reset() }, (_from, event) => {
      const state = this.machine.state;
      report({ connected: state !== 'connecting', caughtUp: state === 'caught-up' });
      this.listener.onFeed(event);
    });
    this.pinger = new Pinger((m) => this.socket.send(m), this.clocks.viewer, () => this.reportClocks());
    this.socket = new ReconnectingSocket(wsURL('/watch/' + encodeURIComponent(info.id)), {
      onOpen: () => {
        this.pinger.start();
        this.machine.send({ type: 'open' });
      },
      onMessage: (m) => this.onMessage(m),
      onDown: (ev) => {
        this.pinger.stop();
        const code = ev?.code ?? null;
        if (code === CLOSE_UNKNOWN_SESSION) this.socket.close();
        this.machine.send({ type: 'down', code });
      },
    });
    firstEventTimestamp(info.id).then(
      (ts) => (this.clocks.firstTimestamp = ts),
      () => {}, // keep the started_at estimate
    );
  }

  get state(): FeedState {
    return this.machine.state;
  }

  /** Events of the followed stream from its latest full snapshot on (rebuilds the live view). */
  get backlog(): readonly StreamEvent[] {
    return this.events;
  }

  /** The live edge as an offset from the session's first event. */
  liveEdge(): number {
    return this.clocks.liveEdge(this.follower.follow);
  }

  private onMessage(raw: unknown): void {
    if (!isObject(raw) || typeof raw.type !== 'string') return;
    const msg = raw as unknown as WatchMessage;
    switch (msg.type) {
      case 'event':
        if (isObject(msg.event)) this.accept(msg);
        break;
      case 'events': // a batch: consecutive seqs of one stream, relayed as one frame (protocol v2)
        if (Array.isArray(msg.events)) {
          const { streamId, seq, recvAt } = msg;
          msg.events.forEach((event, i) => isObject(event) && this.accept({ streamId, seq: seq + i, recvAt, event }));
        }
        break;
      case 'hello':
        this.machine.send({ type: 'hello' });
        this.onHello(msg.live !== false);
        break;
      case 'resync':
        report({ resyncs: hook.resyncs + 1 });
        this.machine.send({ type: 'resync' });
        break;
      case 'caughtup':
        // The server's memory has no full snapshot (e.g. it restarted and the recorder only
        // resent unacknowledged events): start from the latest snapshot in the archive.
        if (this.follower.follow === null && !this.bootQueue) void this.bootstrap();
        else this.machine.send({ type: 'caughtup' });
        break;
      case 'clock':
        if (typeof msg.offset === 'number' && typeof msg.rtt === 'number') {
          this.heardAt.set(String(msg.streamId), Date.now());
          this.clocks.setRecorder(String(msg.streamId), { offset: msg.offset, rtt: msg.rtt });
          this.reportClocks();
        }
        break;
      case 'ended':
        this.ended();
        break;
      case 'live':
        this.listener.onLiveAgain();
        break;
      case 'pong':
        this.pinger.handlePong(msg);
        break;
    }
  }

  /** hello: a session that is not live has ended, unless we watched it live (its recorder may come back). */
  private onHello(live: boolean): void {
    if (!live) {
      if (!this.seenLive || this.hasEnded) this.ended();
      else {
        this.listener.onStatus('Waiting for the recorder to reconnect…');
        if (this.graceTimer === undefined) this.graceTimer = setTimeout(() => this.ended(), RECORDER_GRACE_MS);
      }
      return;
    }
    this.seenLive = true;
    if (this.graceTimer !== undefined) this.listener.onStatus('');
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.hasEnded = false;
    this.listener.onLiveAgain();
  }

  private ended(): void {
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.hasEnded = true;
    this.listener.onEnded();
  }

  /** Whether a status line may go (no grace period running). */
  get waiting(): boolean {
    return this.graceTimer !== undefined;
  }

  /**
   * hello or resync: the server resends from the latest full snapshot. The live replayer is
   * kept (so the last picture stays up instead of a blank frame); the Meta + FullSnapshot that
   * open the backlog rebuild its document and reset its node mirror.
   */
  private reset(): void {
    this.follower.reset();
    this.events = [];
    this.clocks.resetShifts();
  }

  private accept(se: StreamEvent): void {
    if (this.bootQueue) {
      this.bootQueue.push(se);
      return;
    }
    this.heardAt.set(se.streamId, Date.now());
    const shown = this.follower.push(se);
    if (se.streamId === this.follower.follow) this.clocks.noteEvent(se.event.timestamp);
    if (shown.length && shown[shown.length - 1].event.type === EventType.FullSnapshot) this.events = shown.slice();
    else for (const x of shown) this.events.push(x);
    this.listener.onEvent(se, shown);
  }

  private async bootstrap(): Promise<void> {
    this.bootQueue = [];
    let list: StreamEvent[] = [];
    try {
      list = await loadAllEvents(this.info.id);
    } catch (err) {
      console.error(err);
    }
    const queued = this.bootQueue;
    this.bootQueue = null;
    const maxSeq = new Map<string, number>();
    const start = latestSnapshotStart(list);
    if (start >= 0) {
      for (const se of list.slice(start)) {
        maxSeq.set(se.streamId, Math.max(maxSeq.get(se.streamId) ?? 0, se.seq));
        this.accept(se);
      }
    }
    for (const se of queued) if (se.seq > (maxSeq.get(se.streamId) ?? 0)) this.accept(se);
    this.machine.send({ type: 'caughtup' });
  }

  /** Whether a tab's recorder was heard from lately (it pings every 10 s): its live dot. */
  connectedRecently(streamId: string): boolean {
    return Date.now() - (this.heardAt.get(streamId) ?? 0) < TAB_SILENT_MS;
  }

  /** Stops for good (the session ended: nothing more will come). */
  close(): void {
    this.pinger.stop();
    this.socket.close();
  }

  /** Our offset, and the followed recorder's, for automation. */
  private reportClocks(): void {
    this.listener.onClock();
    const vo = this.clocks.viewer.best;
    report({ viewerOffset: vo ? vo.offset : null, viewerRtt: vo ? vo.rtt : null });
    const rec = this.clocks.recorder(this.follower.follow);
    if (rec) report({ recorderOffset: rec.offset, recorderRtt: rec.rtt });
  }
}
