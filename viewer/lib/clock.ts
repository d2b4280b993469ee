// NTP-style clock sync over a WebSocket (formulas in docs/PROTOCOL.md).
// offset θ = ((t1 − t0) + (t2 − t3)) / 2 is "server clock minus our clock";
// round trip δ = (t3 − t0) − (t2 − t1). We keep the lowest-δ sample of the last 8.

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
    readonly clock: NtpClock,
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
