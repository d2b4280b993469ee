// Wire types shared by the viewer pages (see docs/PROTOCOL.md).
import type { eventWithTime } from 'rrweb';

export type RREvent = eventWithTime;

/** One item of GET /api/sessions and of WS /updates. */
export interface SessionInfo {
  id: string;
  live: boolean;
  started_at: number;
  last_event_at: number;
  event_count: number;
  bytes?: number;
  url?: string | null;
  user_agent?: string | null;
}

/** An event with its stream (WS /watch `event` frames, and /events?meta=1 items). */
export interface StreamEvent {
  streamId: string;
  seq: number;
  recvAt?: number;
  event: RREvent;
}

export type WatchMessage =
  | { type: 'hello'; sessionId: string; live: boolean; serverTime: number }
  | ({ type: 'event' } & StreamEvent)
  | { type: 'caughtup' }
  | { type: 'clock'; streamId: string; offset: number; rtt: number }
  | { type: 'resync' }
  | { type: 'ended' }
  | { type: 'live' }
  | { type: 'pong'; t0: number; t1: number; t2: number };

export type UpdatesMessage =
  | { type: 'sessions'; sessions: SessionInfo[] }
  | { type: 'session'; session: SessionInfo };

/** rrweb numbers (kept local so list/login pages do not pull rrweb in). */
export const EV_FULL_SNAPSHOT = 2;
export const EV_INCREMENTAL = 3;
export const EV_META = 4;
export const SRC_MOUSE_MOVE = 1;
export const SRC_MOUSE_INTERACTION = 2;
export const SRC_SCROLL = 3;
export const SRC_TOUCH_MOVE = 6;
export const SRC_DRAG = 12;
export const MOUSE_CLICK = 2;

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
