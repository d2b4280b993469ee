// Live view: an rrweb Replayer (@rrweb/replay, the one copy the page has) in live mode that applies each event the moment it arrives.
//
// What rrweb's own live path costs (rrweb 2.2.2, src/replay/index.ts + timer.ts):
//   replayer.startLive(B); replayer.addEvent(e)
//   1. addEvent defers to a microtask (Promise.resolve().then(...ADD_EVENT)).
//   2. ADD_EVENT computes delay = e.timestamp - B. If e.timestamp < B it is cast at once but
//      as a "sync" (fast-forward) cast: mutations go into the virtual DOM, which only the
//      replay path ever flushes, so a late event never shows; mouse moves/clicks are only
//      stored. Otherwise it becomes a Timer action.
//   3. The Timer only runs actions from a requestAnimationFrame callback once its
//      performance.now()-driven clock passes the delay: every event waits for the next frame
//      (0–16.7 ms at 60 Hz, ~8 ms on average, more on a busy main thread), and rAF does not
//      run at all in a hidden/background tab, so a PM's second tab stalls. A recorder clock
//      that is ahead of ours adds its whole skew as delay (minutes of skew = minutes of
//      stall); one that is behind sends everything down the invisible sync path. That is
//      why rrweb users usually add a buffer (startLive(Date.now() - BUFFER)) — more latency.
//
// What we do instead: we call the Replayer's cast function (getCastFn(event, isSync)(), the
// same function the Timer action would run) synchronously inside the WebSocket message
// handler. No microtask, no frame wait, nothing depends on the recorder clock: DOM mutations,
// inputs, clicks and snapshots hit the iframe in the same task the frame arrived in. Event
// timestamps are re-based per stream onto the viewer clock (recorder offset from `clock`
// messages and our own NTP offset) and clamped to "now" so nothing is ever in the future of
// the replayer clock; the only things still driven by the rAF timer are the cursor
// positions inside a mouse-move batch, which we schedule to play from "now" so the cursor
// moves smoothly. The backlog (before `caughtup`) is cast with isSync=true (no smooth
// scrolling or cursor animation for stale events) and finished with the replayer's own
// `flush` step. With useVirtualDom:false sync mutations go straight to the iframe.
import { Replayer } from '@rrweb/replay';
import { EventType, IncrementalSource, type eventWithTime } from '@rrweb/types';
import { isObject } from './types';
import { fitReplayer } from './scale';

type CastFnGetter = (event: eventWithTime, isSync?: boolean) => () => void;
interface Emitter {
  emit(type: string, payload?: unknown): void;
}
interface Position {
  timeOffset: number;
}

export class LivePlayer {
  private readonly replayer: Replayer;
  private readonly base = Date.now();
  private readonly t0 = performance.now();
  private cursorUntil = 0;
  private readonly cast: CastFnGetter | null;
  private dims: { width: number; height: number } | null = null;
  private readonly onWindowResize = () => this.fit();
  /** Events applied since it was made. */
  applied = 0;

  constructor(private readonly stage: HTMLElement) {
    this.replayer = new Replayer([] as never[], {
      root: stage,
      liveMode: true,
      useVirtualDom: false,
      pauseAnimation: false,
      triggerFocus: false,
      showWarning: false,
      mouseTail: { duration: 400, strokeStyle: 'rgba(220, 38, 38, 0.45)', lineWidth: 2 },
    });
    this.replayer.on('resize', (d: unknown) => {
      if (isObject(d) && typeof d.width === 'number' && typeof d.height === 'number') {
        this.dims = { width: d.width, height: d.height };
        this.fit();
      }
    });
    this.replayer.startLive(this.base);
    const g = (this.replayer as unknown as { getCastFn?: CastFnGetter }).getCastFn;
    this.cast = typeof g === 'function' ? g : null;
    window.addEventListener('resize', this.onWindowResize);
  }

  /** The replayer's clock (viewer epoch ms, advanced by performance.now()). */
  private now(): number {
    return this.base + performance.now() - this.t0;
  }

  /**
   * Applies one event now. `shift` maps the event's recorder timestamp onto the viewer clock
   * (constant per stream); `sync` is true for backlog events.
   */
  apply(e: eventWithTime, shift: number, sync: boolean): void {
    const now = this.now();
    const ev = { ...e, timestamp: Math.min(e.timestamp + shift, now) } as eventWithTime & { delay?: number };
    const type = e.type;
    let isSync = sync;
    let delay = ev.timestamp - this.base;
    if (type === EventType.IncrementalSnapshot && isObject(e.data)) {
      const src = e.data.source;
      const positions = (e.data as { positions?: Position[] }).positions;
      if ((src === IncrementalSource.MouseMove || src === IncrementalSource.TouchMove || src === IncrementalSource.Drag) && positions?.length && !sync) {
        // Play the batch's positions from now on (after any batch still playing), so the
        // cursor glides instead of jumping; never queue more than 1 s of cursor motion.
        let start = Math.max(now, this.cursorUntil);
        if (start - now > 1000) start = now;
        ev.timestamp = start - positions[0].timeOffset;
        this.cursorUntil = ev.timestamp + positions[positions.length - 1].timeOffset;
        delay = start - this.base;
      } else if (src === IncrementalSource.Scroll) {
        isSync = true; // instant scroll instead of a smooth-scroll animation
      }
    }
    ev.delay = delay; // what rrweb's addDelay() would set; the timer needs it for cursor actions
    const ctxEvents = this.replayer.service.state.context.events;
    if (type === EventType.Meta || type === EventType.FullSnapshot || ctxEvents.length === 0) {
      // The replayer uses events[0] as the time origin (media elements); keep just that.
      if (type !== EventType.FullSnapshot || ctxEvents[0]?.type !== EventType.Meta) ctxEvents.length = 0;
      ctxEvents.push(ev);
    }
    this.applied++;
    if (this.cast) this.cast(ev, isSync)();
    else this.replayer.addEvent(ev as never); // rrweb changed its internals: fall back to its live path
  }

  /** Ends a batch of sync (backlog) casts: places the cursor, replays pending selection. */
  flush(): void {
    const emitter = (this.replayer as unknown as { emitter?: Emitter }).emitter;
    emitter?.emit('flush');
  }

  private fit(): void {
    if (this.dims) fitReplayer(this.stage, this.replayer.wrapper, this.dims.width, this.dims.height);
  }

  destroy(): void {
    window.removeEventListener('resize', this.onWindowResize);
    this.replayer.timer.clear();
    try {
      this.replayer.destroy();
    } catch {
      this.replayer.wrapper.remove();
    }
  }
}
