// The player page's modes as two small state machines, in the manner of rrweb's
// replay/machine.ts: each state lists the events it accepts and where they lead; an event a
// state does not list is ignored (send() returns false), never half-handled.
//
// Two regions run side by side, because where the live feed is and what the PM looks at
// change independently (a rewound PM's socket may drop and resend its backlog meanwhile):
//
//   feed:  connecting --open--> live --caughtup--> caught-up
//          live, caught-up --hello/resync--> live (restarts from the latest snapshot)
//          live, caught-up --down--> connecting
//
//   view:  edge --rewind-loaded--> rewound --go-live--> edge
//          edge --ended--> ended (replay view at the last frame)
//          rewound --ended--> ended (the rewind plays on)
//          ended --live-again--> rewound (Go live shows again)
//          replay: a session that had ended before the page opened; nothing leaves it
import type { ReplayPlayer } from './engine';

interface Transition<S extends string, A extends string> {
  target: S;
  actions?: readonly A[];
}
/** For each state, the events it accepts: a target state, or a target plus actions to run. */
type Table<S extends string, E extends { type: string }, A extends string> = {
  readonly [K in S]: { readonly [T in E['type']]?: S | Transition<S, A> };
};

/** A state machine over a transition table; actions run in order after the state changed. */
export class Machine<S extends string, E extends { type: string }, A extends string> {
  constructor(
    private readonly table: Table<S, E, A>,
    private current: S,
    private readonly actions: { [K in A]: (event: E, from: S) => void },
    private readonly onChange: (from: S, event: E) => void = () => {},
  ) {}

  get state(): S {
    return this.current;
  }

  /** Applies `event`; false (and nothing happens) when the current state does not accept it. */
  send(event: E): boolean {
    const t = this.table[this.current][event.type as E['type']];
    if (t === undefined) return false;
    const from = this.current;
    const step: Transition<S, A> = typeof t === 'object' ? t : { target: t as S };
    this.current = step.target;
    for (const a of step.actions ?? []) this.actions[a](event, from);
    this.onChange(from, event);
    return true;
  }
}

// ---- feed: how far the watch socket's stream is ------------------------------------------

/** connecting: socket not open; live: open, hello and backlog arriving; caught-up: at the live edge. */
export type FeedState = 'connecting' | 'live' | 'caught-up';
export type FeedEvent =
  | { type: 'open' } // the socket opened: hello and the backlog follow
  | { type: 'down'; code: number | null } // the socket closed (close code) or failed to open
  | { type: 'hello' } // the server (re)starts the stream from the latest full snapshot
  | { type: 'resync' } // the server dropped our queue and resends from the latest snapshot
  | { type: 'caughtup' }; // the backlog is in: what follows is live
export type FeedAction = 'reset';

export const FEED: Table<FeedState, FeedEvent, FeedAction> = {
  connecting: { open: 'live' },
  live: {
    hello: { target: 'live', actions: ['reset'] },
    resync: { target: 'live', actions: ['reset'] },
    caughtup: 'caught-up',
    down: 'connecting',
  },
  'caught-up': {
    hello: { target: 'live', actions: ['reset'] },
    resync: { target: 'live', actions: ['reset'] },
    down: 'connecting',
  },
};

// ---- view: what the PM looks at -----------------------------------------------------------

/**
 * edge: the live view; rewound: an earlier moment of a session that is live (Go live shows);
 * ended: the session ended while watched (the last frame, or the rewind playing on);
 * replay: a session that had ended before the page opened.
 */
export type ViewState = 'edge' | 'rewound' | 'ended' | 'replay';
export type ViewEvent =
  | { type: 'rewind-loaded'; player: ReplayPlayer; offset: number; play: boolean } // history in: show offset
  | { type: 'go-live' } // the Go live button (or L)
  | { type: 'ended' } // the server says the session ended (or the recorder's grace ran out)
  | { type: 'live-again' }; // the server says the session is live again
export type ViewAction = 'showLive' | 'showRewind' | 'showReplay' | 'bannerEnded' | 'bannerLiveAgain';

export const VIEW: Table<ViewState, ViewEvent, ViewAction> = {
  edge: {
    'rewind-loaded': { target: 'rewound', actions: ['showRewind'] },
    ended: { target: 'ended', actions: ['showReplay', 'bannerEnded'] },
  },
  rewound: {
    'go-live': { target: 'edge', actions: ['showLive'] },
    ended: { target: 'ended', actions: ['bannerEnded'] }, // keep watching the rewind
  },
  ended: {
    'live-again': { target: 'rewound', actions: ['bannerLiveAgain'] },
  },
  replay: {},
};
