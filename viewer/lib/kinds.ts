// What an rrweb event means to a PM: its kind in the event list, whether it is the user acting
// in a tab (the "follow the user" rule), clicks and mutations (rage/dead rules, signals.ts).
// Kinds and tags are fixed in /work/team/pm-spec.md and docs/PROTOCOL.md; the enums are
// rrweb's own (@rrweb/types).
import { EventType, IncrementalSource, MouseInteractions } from '@rrweb/types';
import { isObject, type RREvent } from './types';

export type Kind = 'page' | 'click' | 'input' | 'error' | 'console' | 'network' | 'custom';
export const KINDS: readonly Kind[] = ['page', 'click', 'input', 'error', 'console', 'network', 'custom'];

/** A recorder custom event ({tag, payload}), or null. */
export function customOf(e: RREvent): { tag: string; payload: Record<string, unknown> } | null {
  if (e.type !== EventType.Custom || !isObject(e.data) || typeof e.data.tag !== 'string') return null;
  return { tag: e.data.tag, payload: isObject(e.data.payload) ? e.data.payload : {} };
}

function incremental(e: RREvent): Record<string, unknown> | null {
  return e.type === EventType.IncrementalSnapshot && isObject(e.data) ? e.data : null;
}

/** A click's target node id, position and the control's text the recorder sent (if any), or null. */
export function clickOf(e: RREvent): { id: number; x: number; y: number; hasXY: boolean; text: string } | null {
  const d = incremental(e);
  if (!d || d.source !== IncrementalSource.MouseInteraction || d.type !== MouseInteractions.Click) return null;
  const hasXY = typeof d.x === 'number' && typeof d.y === 'number' && Number.isFinite(d.x) && Number.isFinite(d.y);
  const text = typeof d.text === 'string' ? d.text.replace(/\s+/g, ' ').trim() : '';
  return { id: Number(d.id), x: hasXY ? Number(d.x) : 0, y: hasXY ? Number(d.y) : 0, hasXY, text };
}

/** An Input event's node id and text (masked by the recorder), or null. */
export function inputOf(e: RREvent): { id: number; text: string } | null {
  const d = incremental(e);
  if (!d || d.source !== IncrementalSource.Input) return null;
  const text = typeof d.isChecked === 'boolean' && d.text === undefined ? (d.isChecked ? '☑' : '☐') : String(d.text ?? '');
  return { id: Number(d.id), text };
}

export function isMutation(e: RREvent): boolean {
  return incremental(e)?.source === IncrementalSource.Mutation;
}

const ACTIONS: ReadonlySet<unknown> = new Set([
  IncrementalSource.MouseMove,
  IncrementalSource.MouseInteraction,
  IncrementalSource.Scroll,
  IncrementalSource.Input,
  IncrementalSource.TouchMove,
  IncrementalSource.Drag,
]);

/**
 * The user is acting in this event's tab: a page load (full snapshot) or pointer, scroll or
 * input activity. Background tabs emit none of these (timers only mutate), so the tab of the
 * latest one is the tab the user is in: "follow the user" shows it.
 */
export function isUserAction(e: RREvent): boolean {
  if (e.type === EventType.FullSnapshot) return true;
  const d = incremental(e);
  return d !== null && ACTIONS.has(d.source);
}

/** The list kind of a custom event, or null for the recorder's own bookkeeping. */
export function customKind(tag: string): Kind | null {
  if (tag === 'streamdom-error') return 'error';
  if (tag === 'streamdom-console') return 'console';
  if (tag === 'streamdom-network') return 'network';
  if (tag === 'streamdom-identify' || tag === 'streamdom-metadata') return null; // shown in the header
  return 'custom';
}

/** Timeline marker kinds beside the event kinds (signals.ts, session.ts). */
export type MarkerKind = 'error' | 'network' | 'rage' | 'dead' | 'switch';

/** Whether a custom event is a failure worth a timeline marker (the server's error counts). */
export function failureOf(tag: string, payload: Record<string, unknown>): MarkerKind | null {
  if (tag === 'streamdom-error') return 'error';
  if (tag === 'streamdom-console' && payload.level === 'error') return 'error';
  if (tag === 'streamdom-network') {
    const status = Number(payload.status);
    if (status === 0 || status >= 400) return 'network';
  }
  return null;
}

/** One line of text for a custom event's payload. */
export function describeCustom(tag: string, p: Record<string, unknown>): string {
  const s = (v: unknown) => (v === undefined || v === null ? '' : String(v));
  if (tag === 'streamdom-error') return s(p.message) || 'error';
  if (tag === 'streamdom-console') return `${s(p.level) || 'log'}: ${s(p.message)}`;
  if (tag === 'streamdom-network') {
    const status = Number(p.status) === 0 ? 'failed' : s(p.status);
    return `${s(p.method) || 'GET'} ${s(p.url)} → ${status} · ${Math.round(Number(p.duration) || 0)} ms`;
  }
  let body = '';
  try {
    body = JSON.stringify(p);
  } catch {
    body = '';
  }
  return body && body !== '{}' ? `${tag} ${body.slice(0, 120)}` : tag;
}
