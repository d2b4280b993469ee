// A WebSocket that reconnects by itself with exponential backoff (0.5 s doubling to 10 s, ±25 % jitter).

export interface SocketHandlers {
  /** Called on every successful (re)connection; `reconnect` is false the first time. */
  onOpen?(reconnect: boolean): void;
  onMessage(msg: unknown): void;
  /** Called when a connection attempt fails or an open connection drops. */
  onDown?(ev: CloseEvent | null): void;
}

export class ReconnectingSocket {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private everOpened = false;
  private openedAt = 0;
  connected = false;

  constructor(
    private readonly url: string,
    private readonly h: SocketHandlers,
    private readonly minDelay = 500,
    private readonly maxDelay = 10000,
  ) {
    this.connect();
    window.addEventListener('online', () => this.reconnectSoon(0));
  }

  private connect(): void {
    if (this.stopped) return;
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.connected = true;
      this.openedAt = performance.now();
      const reconnect = this.everOpened;
      this.everOpened = true;
      this.h.onOpen?.(reconnect);
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data !== 'string') return;
      let msg: unknown;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.h.onMessage(msg);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // Reset the backoff only after a connection that lasted: a server that accepts and
      // closes right away must not be hammered.
      if (this.connected && performance.now() - this.openedAt > 5000) this.attempt = 0;
      this.connected = false;
      if (this.stopped) return;
      this.h.onDown?.(ev);
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    this.attempt++;
    this.reconnectSoon(base * (0.75 + Math.random() * 0.5));
  }

  private reconnectSoon(delay: number): void {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(obj: unknown): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
    this.ws = null;
    this.connected = false;
  }
}
