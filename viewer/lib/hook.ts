// window.__streamdom: state exposed for browser automation and latency benchmarks.

export interface StreamdomHook {
  mode: 'loading' | 'live' | 'rewind' | 'replay';
  /** Delay of the last applied live event: (now + viewerOffset) − (timestamp + recorderOffset). */
  lastDelayMs: number | null;
  /** ± (viewerRtt + recorderRtt) / 2 for lastDelayMs. */
  uncertaintyMs: number | null;
  /** Server clock − viewer clock (ms), from our NTP pings on the watch socket. */
  viewerOffset: number | null;
  viewerRtt: number | null;
  /** Server clock − recorder clock (ms) of the followed stream, from `clock` messages. */
  recorderOffset: number | null;
  recorderRtt: number | null;
  /** Events applied to the live replayer since the page opened. */
  appliedCount: number;
  /** performance.now() / Date.now() right after the last live apply. */
  lastAppliedAt: number | null;
  lastAppliedWallMs: number | null;
  /** rrweb timestamp (recorder clock), stream and seq of the last applied event. */
  lastEventTimestamp: number | null;
  lastStreamId: string | null;
  lastSeq: number | null;
  /** Server receive time of the last applied event (server clock): splits the delay into
   *  recorder→server = recvAt − (timestamp + recorderOffset) and
   *  server→screen = (lastAppliedWallMs + viewerOffset) − recvAt. */
  lastRecvAt: number | null;
  /** `resync` frames received (the server dropped this viewer's queue and resent the backlog). */
  resyncs: number;
  /** The live feed has delivered its backlog: events now arrive as they happen. */
  caughtUp: boolean;
  /** The watch socket is open. */
  connected: boolean;
  /** The session ended while watched (the page's state is `ended`). */
  ended: boolean;
  /** Replay/rewind position in ms from the first event (null while live). */
  currentTime(): number | null;
}

declare global {
  interface Window {
    __streamdom: StreamdomHook;
  }
}

const state: StreamdomHook = {
  mode: 'loading',
  lastDelayMs: null,
  uncertaintyMs: null,
  viewerOffset: null,
  viewerRtt: null,
  recorderOffset: null,
  recorderRtt: null,
  appliedCount: 0,
  lastAppliedAt: null,
  lastAppliedWallMs: null,
  lastEventTimestamp: null,
  lastStreamId: null,
  lastSeq: null,
  lastRecvAt: null,
  resyncs: 0,
  caughtUp: false,
  connected: false,
  ended: false,
  currentTime: () => null,
};
window.__streamdom = state;

/** What automation sees; read it here, change it only through report(). */
export const hook: Readonly<StreamdomHook> = state;

/** The one way to update window.__streamdom. */
export function report(patch: Partial<StreamdomHook>): void {
  Object.assign(state, patch);
}
