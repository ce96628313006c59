// Recovery after a reconnect or reload: which history messages to show, for how long,
// and where the channel's stream stands afterwards. Pure, so the rules are tested alone;
// the store applies the result.

import type { ChatIn, History, StreamPosition } from './protocol';

/** What this page has received of a channel's history. */
export interface RecoveryState {
  epoch: string;
  /**
   * The offset up to which the page holds every message of the epoch (chats, own acks,
   * history, or announced by user_sync): where a reconnection resumes.
   */
  seen: number;
  /**
   * Offsets held beyond a gap after `seen`, ascending; absent when there is no gap. An ack
   * can arrive just before the chat below it (they travel on different Redis connections);
   * a gap that stays means frames were missed, and a reconnection with `since` recovers them.
   */
  ahead?: readonly number[];
}

/** Most offsets kept beyond a gap; past this the page resynchronises anyway. */
export const MAX_AHEAD = 1000;

/** Adds a held offset above `seen` and moves `seen` over every offset now contiguous. */
function hold(state: RecoveryState, offset: number): RecoveryState {
  const ahead = [...(state.ahead ?? []), offset].sort((a, b) => a - b);
  let seen = state.seen;
  while (ahead.length > 0 && ahead[0] === seen + 1) {
    seen += 1;
    ahead.shift();
  }
  return ahead.length === 0 ? { epoch: state.epoch, seen } : { epoch: state.epoch, seen, ahead };
}

function held(state: RecoveryState, offset: number): boolean {
  return offset <= state.seen || (state.ahead?.includes(offset) ?? false);
}

/** Whether some offset after `seen` is missing while later ones arrived. */
export function hasGap(state: RecoveryState | null): boolean {
  return (state?.ahead?.length ?? 0) > 0;
}

/** A message id already on the canvas, by whom it is known there. */
export interface KnownIds {
  has(messageId: string): boolean;
}

export interface HistoryInput {
  frame: History;
  /** What the page had before this connection (restored after a reload). */
  before: RecoveryState | null;
  /** Whether this connection asked for recovery with `since`. */
  requested: boolean;
  /** The channel's latest offset from the user_sync just before, if any. */
  syncOffset: number | undefined;
  known: KnownIds;
  /** The server's clock now (ms since the epoch), to age messages by their timestamps. */
  serverNow: number;
  fadeMs: number;
}

export interface HistoryEntry {
  frame: ChatIn;
  /** How long it stays on the canvas from now. */
  remainingMs: number;
}

export interface HistoryPlan {
  show: HistoryEntry[];
  after: RecoveryState;
  /** Recovery was asked for and was incomplete: the page says so. */
  missedSome: boolean;
}

/**
 * How much of its fade a message sent at `timestamp` has left at `serverNow`: the time it
 * still shows on the screens of people who saw it arrive. Unknown timestamps count as new.
 */
export function fadeRemaining(timestamp: string | undefined, serverNow: number, fadeMs: number): number {
  if (timestamp === undefined) return fadeMs;
  const sent = Date.parse(timestamp);
  if (Number.isNaN(sent)) return fadeMs;
  return Math.min(fadeMs, Math.max(0, fadeMs - (serverNow - sent)));
}

/**
 * Messages this page saw before (offset up to `before.seen` in the same epoch) come back
 * only while they are still visible to others, with the time they have left; that restores
 * the canvas after a reload. Messages it missed get the full fade from now, as if they had
 * arrived live, so nothing sent while it was away goes unseen. A newcomer, or a page whose
 * epoch is gone, gets what is still visible to others.
 */
export function planHistory(input: HistoryInput): HistoryPlan {
  const { frame, before, known, serverNow, fadeMs } = input;
  const sameEpoch = before !== null && before.epoch === frame.epoch;
  let seen = sameEpoch ? before.seen : 0;
  if (input.syncOffset !== undefined) seen = Math.max(seen, input.syncOffset);
  const show: HistoryEntry[] = [];
  const ids = new Set<string>();
  for (const m of frame.messages) {
    if (m.offset !== undefined) seen = Math.max(seen, m.offset);
    if (known.has(m.message_id) || ids.has(m.message_id)) continue;
    ids.add(m.message_id);
    const missed = sameEpoch && m.offset !== undefined && m.offset > before.seen;
    const remainingMs = missed ? fadeMs : fadeRemaining(m.timestamp, serverNow, fadeMs);
    if (remainingMs > 0) show.push({ frame: m, remainingMs });
  }
  return {
    show,
    after: { epoch: frame.epoch, seen },
    missedSome: input.requested && !frame.recovered,
  };
}

export type LiveVerdict = { accept: true; state: RecoveryState | null } | { accept: false };

/**
 * A live chat frame: a duplicate of an offset already received in this epoch is dropped;
 * a new epoch (the history was lost, e.g. Redis restarted empty) starts over from it.
 * Frames without offset or epoch (an older gateway) are always accepted.
 */
export function acceptLive(state: RecoveryState | null, frame: ChatIn): LiveVerdict {
  const { offset, epoch } = frame;
  if (offset === undefined || epoch === undefined) return { accept: true, state };
  if (state === null || state.epoch !== epoch) return { accept: true, state: { epoch, seen: offset } };
  if (held(state, offset)) return { accept: false };
  return { accept: true, state: hold(state, offset) };
}

/**
 * The ack of this page's own message holds its offset: `seen` moves over it only once every
 * offset below it is held too (an earlier chat from someone else may still be on its way).
 */
export function afterAck(state: RecoveryState | null, offset: number | undefined, epoch: string | undefined): RecoveryState | null {
  if (state === null || offset === undefined || epoch !== state.epoch || held(state, offset)) return state;
  return hold(state, offset);
}

/** A message still on the canvas, for choosing where recovery starts. */
export interface Shown {
  offset?: number;
  epoch?: string;
}

/**
 * The `since`/`epoch` to reconnect with: after everything received, but early enough that
 * messages still on the canvas come back after a reload (duplicates are dropped by id).
 */
export function recoveryPoint(state: RecoveryState | null, shown: Iterable<Shown>): StreamPosition | null {
  if (state === null) return null;
  let since = state.seen;
  for (const m of shown) {
    if (m.epoch === state.epoch && m.offset !== undefined && m.offset - 1 < since) since = m.offset - 1;
  }
  return { epoch: state.epoch, offset: Math.max(0, since) };
}

/** What a tab keeps across reloads (sessionStorage). */
export interface SavedRecovery {
  state: RecoveryState;
  since: number;
}

export function encodeSavedRecovery(state: RecoveryState, point: StreamPosition): string {
  return JSON.stringify({ epoch: state.epoch, seen: state.seen, since: point.offset });
}

/** Reads what `encodeSavedRecovery` wrote; anything else is ignored, never trusted. */
export function parseSavedRecovery(text: string | null): SavedRecovery | null {
  if (text === null) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const { epoch, seen, since } = raw as Record<string, unknown>;
  const offset = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (typeof epoch !== 'string' || epoch === '' || !offset(seen) || !offset(since) || since > seen) return null;
  return { state: { epoch, seen }, since };
}

export function recoveryStorageKey(channel: string): string {
  return `canvaschat.recovery.${channel}`;
}

export function loadRecovery(storage: Pick<Storage, 'getItem'> | null, channel: string): SavedRecovery | null {
  try {
    return parseSavedRecovery(storage?.getItem(recoveryStorageKey(channel)) ?? null);
  } catch {
    return null;
  }
}

export function saveRecovery(storage: Pick<Storage, 'setItem'> | null, channel: string, text: string): void {
  try {
    storage?.setItem(recoveryStorageKey(channel), text);
  } catch {
    // Private mode or a full quota: a reload then starts as a newcomer.
  }
}
