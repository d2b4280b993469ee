// Clock math of the live view. NTP-style sync over a WebSocket (formulas in docs/PROTOCOL.md):
// offset θ = ((t1 − t0) + (t2 − t3)) / 2 is "server clock minus our clock";
// round trip δ = (t3 − t0) − (t2 − t1). We keep the lowest-δ sample of the last 8.
// Three clocks meet here: the recorder's (event timestamps), the server's, and ours.
import { httpClockSkew } from './api';
import type { Delay } from './latency';
import type { StreamEvent } from './types';

export interface ClockSample {
  offset: number;
  rtt: number;
}

export class NtpClock {
  private samples: ClockSample[] = [];
  best: ClockSample | null = null;

  add(t0: number, t1: number, t2: number, t3: number): ClockSample {
    const s = { offset: (t1 - t0 + (t2 - t3)) / 2, rtt: Math.max(0, t3 - t0 - (t2 - t1)) };
    this.samples.push(s);
    if (this.samples.length > 8) this.samples.shift();
    this.best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    return s;
  }
}

/** Sends a quick burst of 5 pings (each after the previous pong), then one every 10 s. */
export class Pinger {
  private burstLeft = 0;
  private interval: ReturnType<typeof setInterval> | undefined;
  private burstTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly send: (msg: unknown) => boolean,
    private readonly clock: NtpClock,
    private readonly onSample: () => void = () => {},
  ) {}

  /** (Re)start after a (re)connection. */
  start(): void {
    this.stop();
    this.burstLeft = 5;
    this.ping();
    this.interval = setInterval(() => this.ping(), 10000);
  }

  stop(): void {
    clearInterval(this.interval);
    clearTimeout(this.burstTimer);
  }

  private ping(): void {
    this.send({ type: 'ping', t0: Date.now() });
  }

  handlePong(msg: { t0: number; t1: number; t2: number }): void {
    const t3 = Date.now();
    if (typeof msg.t0 !== 'number' || typeof msg.t1 !== 'number' || typeof msg.t2 !== 'number') return;
    this.clock.add(msg.t0, msg.t1, msg.t2, t3);
    this.onSample();
    if (this.burstLeft > 1) {
      this.burstLeft--;
      clearTimeout(this.burstTimer);
      this.burstTimer = setTimeout(() => this.ping(), 20);
    } else {
      this.burstLeft = 0;
    }
  }
}

/** The clocks of one watched session: ours and each recorder stream's, both against the server's. */
export class SessionClocks {
  readonly viewer = new NtpClock();
  private readonly recorders = new Map<string, ClockSample>();
  /** Per stream: recorder clock -> viewer clock, fixed until the stream restarts (see shift()). */
  private readonly shifts = new Map<string, number>();
  private lastEvent: { ts: number; wall: number } | null = null;
  /** Timestamp of the session's first event (replay offsets count from it), once known. */
  firstTimestamp: number | null = null;

  constructor(private readonly startedAt: number) {}

  /** A recorder's offset to the server (`clock` message). */
  setRecorder(streamId: string, sample: ClockSample): void {
    this.recorders.set(streamId, sample);
  }

  recorder(streamId: string | null): ClockSample | undefined {
    return streamId === null ? undefined : this.recorders.get(streamId);
  }

  /** The stream restarts from a snapshot: measure each stream's shift anew. */
  resetShifts(): void {
    this.shifts.clear();
  }

  /** An event of the followed stream arrived now (the live edge without a recorder clock). */
  noteEvent(timestamp: number): void {
    this.lastEvent = { ts: timestamp, wall: Date.now() };
  }

  /** Constant per stream mapping its recorder timestamps onto our clock. */
  shift(se: StreamEvent): number {
    let s = this.shifts.get(se.streamId);
    if (s === undefined) {
      const rec = this.recorders.get(se.streamId);
      const vo = this.viewer.best;
      s = rec && vo ? rec.offset - vo.offset : Date.now() - se.event.timestamp;
      this.shifts.set(se.streamId, s);
    }
    return s;
  }

  /** Event -> screen delay of `se` shown at our wall time `shownAt`, with its uncertainty; null until both clocks are known. */
  delay(se: StreamEvent, shownAt: number): Delay | null {
    const vo = this.viewer.best;
    const rec = this.recorders.get(se.streamId);
    if (!vo || !rec) return null;
    return { delay: shownAt + vo.offset - (se.event.timestamp + rec.offset), uncertainty: (vo.rtt + rec.rtt) / 2 };
  }

  serverNow(): number {
    return Date.now() + (this.viewer.best?.offset ?? httpClockSkew);
  }

  /** Now, on the followed recorder's clock (the clock replay offsets are measured in). */
  private recorderNow(follow: string | null): number {
    const rec = this.recorder(follow);
    if (rec) return this.serverNow() - rec.offset;
    if (this.lastEvent) return this.lastEvent.ts + (Date.now() - this.lastEvent.wall);
    return this.serverNow();
  }

  /** The live edge as an offset from the session's first event (what the replayer uses). */
  liveEdge(follow: string | null): number {
    const first = this.firstTimestamp ?? this.startedAt - (this.recorder(follow)?.offset ?? 0);
    return Math.max(0, this.recorderNow(follow) - first);
  }
}
