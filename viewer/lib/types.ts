// Wire types shared by the viewer pages (see docs/PROTOCOL.md). rrweb's event kinds are its
// own enums (EventType, IncrementalSource, ...), imported from '@rrweb/types' where they are
// needed; pages without a replayer (list, login) never import them.
import type { eventWithTime } from '@rrweb/types';

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
  // Issue 16 (see the summary fields in /work/team/pm-spec.md); optional: older servers lack them.
  user_id?: string;
  traits?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  tabs?: number;
  errors?: number;
  warnings?: number;
  network_errors?: number;
  rage_clicks?: number;
  dead_clicks?: number;
  /** THE duration (last_event_at − started_at, server clock): list and player show this. */
  duration_ms?: number;
  browser?: string;
  os?: string;
}

/** GET /api/sessions: one page of the matches and the true number of them. */
export interface SessionPage {
  sessions: SessionInfo[];
  total?: number;
  offset?: number;
  limit?: number;
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
  | { type: 'events'; streamId: string; seq: number; recvAt?: number; events: RREvent[] }
  | { type: 'caughtup' }
  | { type: 'clock'; streamId: string; offset: number; rtt: number }
  | { type: 'resync' }
  | { type: 'ended' }
  | { type: 'live' }
  | { type: 'pong'; t0: number; t1: number; t2: number };

export type UpdatesMessage =
  | { type: 'sessions'; sessions: SessionInfo[] }
  | { type: 'session'; session: SessionInfo };

/** The session's one duration: the summary's duration_ms (server clock), or the same difference for an older server. */
export function durationOf(info: SessionInfo): number {
  return info.duration_ms ?? Math.max(0, info.last_event_at - info.started_at);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
