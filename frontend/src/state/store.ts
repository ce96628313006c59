// The chat's state: connection, presence and the messages on the canvas. Everything the
// UI shows comes from here; the network client (net/client.ts) only calls these actions.

import { createStore, type StoreApi } from 'zustand/vanilla';
import {
  acceptLive,
  afterAck,
  planHistory,
  recoveryPoint,
  type RecoveryState,
  type SavedRecovery,
} from '../lib/history';
import type { ChatIn, History, Position, ServerFrame, StreamPosition } from '../lib/protocol';

/** How long a delivered message stays on the canvas. */
export const FADE_MS = 5000;
/** An own message with no ack after this long is marked failed (it can be retried). */
export const ACK_TIMEOUT_MS = 10_000;
/** Own messages not yet confirmed (queued, sending or failed) kept at most. */
export const MAX_UNSENT = 50;
/** Messages kept on the canvas at most; the oldest delivered ones go first. */
export const MAX_MESSAGES = 500;
const NOTICE_MS = 8000;
/** Own acked message ids remembered after they fade, so history does not bring them back. */
const MAX_ACKED_IDS = 1000;
/** How long the "some messages may have been missed" line stays (it can be dismissed). */
export const MISSED_NOTICE_MS = 12_000;

export type ConnectionState =
  | { status: 'idle' }
  | { status: 'connecting'; attempt: number }
  | { status: 'connected' }
  | { status: 'reconnecting'; attempt: number; retryAt: number }
  | { status: 'failed'; reason: string };

/**
 * queued: typed while offline (or retried), waits for the connection;
 * sending: on the wire, waiting for the ack; sent: acked and fading;
 * failed: refused or lost, can be retried; received: someone else's, fading.
 */
export type MessageStatus = 'queued' | 'sending' | 'sent' | 'failed' | 'received';

export interface CanvasMessage {
  /** Unique on the page: the client_msg_id for own messages, the message_id otherwise. */
  key: string;
  own: boolean;
  userId: string;
  text: string;
  position: Position;
  status: MessageStatus;
  messageId?: string;
  error?: string;
  /**
   * When the fade started (Date.now()); the message is removed FADE_MS later. A message
   * from history that others have seen for a while gets a start in the past.
   */
  fadeStartedAt?: number;
  /** Position in the channel's history, when the gateway keeps one. */
  offset?: number;
  epoch?: string;
}

/** Another user's pointer, in canvas coordinates. */
export interface RemoteCursor {
  position: Position;
  /** Date.now() of the last update; cursors idle for a while are hidden. */
  at: number;
}

export interface Notice {
  id: number;
  text: string;
}

export interface ChatState {
  userId: string | null;
  channel: string | null;
  connection: ConnectionState;
  /** Users online in the channel, sorted; from the server, never guessed. */
  users: string[];
  messages: CanvasMessage[];
  notice: Notice | null;
  /** Others' cursors by user id; removed when they leave. */
  cursors: Record<string, RemoteCursor>;
  /** Where this page stands in the channel's history (null: gateway without history). */
  recovery: RecoveryState | null;
  /** Set when a recovery came back incomplete; the page says so once, quietly. */
  missedNotice: number | null;

  setIdentity: (userId: string, channel: string) => void;
  /** After a reload: what the tab had received before, so it can recover from there. */
  restoreRecovery: (saved: SavedRecovery) => void;
  /** The since/epoch to connect with, or null to connect as a newcomer. */
  recoveryPoint: () => StreamPosition | null;
  /** A new connection is being opened; `recovering` when it asked for history since a point. */
  beginConnection: (recovering: boolean) => void;
  setConnection: (connection: ConnectionState) => void;
  /** Adds an own message in state `queued`, or `failed` when too many are unsent. */
  compose: (key: string, text: string, position: Position) => CanvasMessage;
  markSending: (key: string) => void;
  receive: (frame: ServerFrame) => void;
  /** The connection closed: whatever was on the wire without an ack is now failed. */
  failInFlight: (reason: string) => void;
  /**
   * The connection closed, but the gateway de-duplicates by client_msg_id: whatever was on
   * the wire is sent again on the next connection, and the ack tells which it was.
   */
  requeueInFlight: () => void;
  dismissMissedNotice: () => void;
  /** Puts a failed message back in the queue. */
  requeue: (key: string) => void;
  dismiss: (key: string) => void;
  queued: () => CanvasMessage[];
  showNotice: (text: string) => void;
  clearNotice: () => void;
}

export type ChatStore = StoreApi<ChatState>;

type ChatData = Pick<
  ChatState,
  'userId' | 'channel' | 'connection' | 'users' | 'messages' | 'notice' | 'cursors' | 'recovery' | 'missedNotice'
>;

/** A store's data before any identity, and again whenever the identity changes. */
function emptyChat(): ChatData {
  return {
    userId: null,
    channel: null,
    connection: { status: 'idle' },
    users: [],
    messages: [],
    notice: null,
    cursors: {},
    recovery: null,
    missedNotice: null,
  };
}

function sortedUnique(users: Iterable<string>): string[] {
  return [...new Set(users)].sort((a, b) => a.localeCompare(b));
}

function isUnsent(m: CanvasMessage): boolean {
  return m.own && (m.status === 'queued' || m.status === 'sending' || m.status === 'failed');
}

export function createChatStore(): ChatStore {
  const fadeTimers = new Map<string, ReturnType<typeof setTimeout>>();
  const ackTimers = new Map<string, ReturnType<typeof setTimeout>>();
  let noticeTimer: ReturnType<typeof setTimeout> | undefined;
  let missedTimer: ReturnType<typeof setTimeout> | undefined;
  let noticeSeq = 0;
  // Per connection: whether it asked for recovery, the user_sync's offset and the server's
  // clock relative to ours (to age history messages by their server timestamps).
  let recovering = false;
  let syncOffset: number | undefined;
  let serverClockSkew = 0;
  // After a reload, where the previous page asked to resume from (its messages are gone).
  let restoredSince: number | null = null;
  // Ids of own messages the gateway confirmed; insertion order, so the oldest go first.
  const ackedIds = new Set<string>();

  const clearTimer = (timers: Map<string, ReturnType<typeof setTimeout>>, key: string) => {
    const t = timers.get(key);
    if (t !== undefined) {
      clearTimeout(t);
      timers.delete(key);
    }
  };

  return createStore<ChatState>()((set, get) => {
    const update = (key: string, patch: Partial<CanvasMessage>) => {
      set((s) => ({ messages: s.messages.map((m) => (m.key === key ? { ...m, ...patch } : m)) }));
    };

    const remove = (key: string) => {
      clearTimer(fadeTimers, key);
      clearTimer(ackTimers, key);
      set((s) => ({ messages: s.messages.filter((m) => m.key !== key) }));
    };

    /** Starts the removal timer; returns the fade's start, in the past when time is left over. */
    const startFade = (key: string, remainingMs = FADE_MS) => {
      clearTimer(fadeTimers, key);
      fadeTimers.set(
        key,
        setTimeout(() => {
          fadeTimers.delete(key);
          remove(key);
        }, remainingMs),
      );
      return Date.now() - (FADE_MS - remainingMs);
    };

    const receivedMessage = (frame: ChatIn, remainingMs: number): CanvasMessage => {
      // Own messages come back only in history (after a reload); they are shown as sent.
      const own = frame.user_id === get().userId;
      return {
        key: frame.message_id,
        own,
        userId: frame.user_id,
        text: frame.payload,
        position: frame.position,
        status: own ? 'sent' : 'received',
        messageId: frame.message_id,
        offset: frame.offset,
        epoch: frame.epoch,
        fadeStartedAt: startFade(frame.message_id, remainingMs),
      };
    };

    const showMissedNotice = () => {
      if (missedTimer !== undefined) clearTimeout(missedTimer);
      noticeSeq += 1;
      set({ missedNotice: noticeSeq });
      missedTimer = setTimeout(() => {
        missedTimer = undefined;
        set({ missedNotice: null });
      }, MISSED_NOTICE_MS);
    };

    const applyHistory = (frame: History) => {
      const s = get();
      const known = new Set<string>(ackedIds);
      for (const m of s.messages) {
        known.add(m.key);
        if (m.messageId !== undefined) known.add(m.messageId);
      }
      const plan = planHistory({
        frame,
        before: s.recovery,
        requested: recovering,
        syncOffset,
        known,
        serverNow: Date.now() + serverClockSkew,
        fadeMs: FADE_MS,
      });
      restoredSince = null;
      set({ recovery: plan.after });
      add(...plan.show.map(({ frame: m, remainingMs }) => receivedMessage(m, remainingMs)));
      if (plan.missedSome) showMissedNotice();
    };

    /**
     * Adds messages in one update, dropping the oldest delivered ones beyond MAX_MESSAGES
     * (those just added go last: they are the newest).
     */
    const add = (...added: CanvasMessage[]) => {
      const messages = [...get().messages, ...added];
      let excess = messages.length - MAX_MESSAGES;
      const dropped = new Set<string>();
      for (const m of messages) {
        if (excess <= 0) break;
        if (!isUnsent(m)) {
          dropped.add(m.key);
          excess--;
        }
      }
      for (const key of dropped) {
        clearTimer(fadeTimers, key);
        clearTimer(ackTimers, key);
      }
      set({ messages: dropped.size ? messages.filter((m) => !dropped.has(m.key)) : messages });
    };

    const failMessage = (key: string, reason: string) => {
      clearTimer(ackTimers, key);
      clearTimer(fadeTimers, key);
      update(key, { status: 'failed', error: reason, fadeStartedAt: undefined });
    };

    const resetAll = () => {
      for (const t of fadeTimers.values()) clearTimeout(t);
      for (const t of ackTimers.values()) clearTimeout(t);
      fadeTimers.clear();
      ackTimers.clear();
      clearTimeout(missedTimer);
      missedTimer = undefined;
      recovering = false;
      syncOffset = undefined;
      restoredSince = null;
      ackedIds.clear();
    };

    return {
      ...emptyChat(),

      setIdentity(userId, channel) {
        resetAll();
        set({ ...emptyChat(), userId, channel });
      },

      restoreRecovery(saved) {
        set({ recovery: saved.state });
        restoredSince = saved.since;
      },

      recoveryPoint() {
        const s = get();
        const point = recoveryPoint(s.recovery, s.messages);
        if (point === null || restoredSince === null) return point;
        return { ...point, offset: Math.min(point.offset, restoredSince) };
      },

      beginConnection(asked) {
        recovering = asked;
        syncOffset = undefined;
      },

      setConnection(connection) {
        set({ connection });
      },

      compose(key, text, position) {
        const userId = get().userId ?? '';
        const unsent = get().messages.filter(isUnsent).length;
        const message: CanvasMessage =
          unsent >= MAX_UNSENT
            ? {
                key,
                own: true,
                userId,
                text,
                position,
                status: 'failed',
                error: `${MAX_UNSENT} messages are still unsent; retry or dismiss some first.`,
              }
            : { key, own: true, userId, text, position, status: 'queued' };
        add(message);
        return message;
      },

      markSending(key) {
        update(key, { status: 'sending', error: undefined });
        clearTimer(ackTimers, key);
        ackTimers.set(
          key,
          setTimeout(() => {
            ackTimers.delete(key);
            const m = get().messages.find((x) => x.key === key);
            if (m?.status === 'sending') failMessage(key, 'The server did not confirm this message.');
          }, ACK_TIMEOUT_MS),
        );
      },

      receive(frame) {
        const s = get();
        if ('channel_id' in frame && s.channel !== null && frame.channel_id !== s.channel) return;
        switch (frame.type) {
          case 'user_sync': {
            const users = sortedUnique(frame.users);
            const present = new Set(users);
            const cursors = Object.fromEntries(Object.entries(s.cursors).filter(([u]) => present.has(u)));
            set({ users, cursors });
            syncOffset = frame.offset;
            const serverNow = frame.timestamp === undefined ? Number.NaN : Date.parse(frame.timestamp);
            serverClockSkew = Number.isNaN(serverNow) ? 0 : serverNow - Date.now();
            return;
          }
          case 'user_joined':
            set({ users: sortedUnique([...s.users, frame.user_id]) });
            return;
          case 'user_left': {
            // A connection that replaced an older one of this user (reload, handover) can
            // hear that older one's departure after its own user_sync; while connected,
            // this user is online whatever that says.
            if (frame.user_id === s.userId && s.connection.status === 'connected') return;
            const { [frame.user_id]: _gone, ...cursors } = s.cursors;
            set({ users: s.users.filter((u) => u !== frame.user_id), cursors });
            return;
          }
          case 'history':
            applyHistory(frame);
            return;
          case 'cursor':
            if (frame.user_id === s.userId) return;
            set({ cursors: { ...s.cursors, [frame.user_id]: { position: frame.position, at: Date.now() } } });
            return;
          case 'chat': {
            const verdict = acceptLive(s.recovery, frame);
            if (!verdict.accept) return;
            if (verdict.state !== s.recovery) set({ recovery: verdict.state });
            if (s.messages.some((m) => m.key === frame.message_id || m.messageId === frame.message_id)) return;
            add(receivedMessage(frame, FADE_MS));
            return;
          }
          case 'ack': {
            const m = s.messages.find((x) => x.own && x.key === frame.client_msg_id);
            // A late ack after a timeout still proves delivery; a retried copy may be queued.
            if (m === undefined || m.status === 'sent') return;
            clearTimer(ackTimers, m.key);
            // The same message may already be on the canvas from history (sent before a
            // reconnect, acked only now): keep one.
            if (s.messages.some((x) => x.key === frame.message_id)) remove(frame.message_id);
            ackedIds.add(frame.message_id);
            for (const id of ackedIds) {
              if (ackedIds.size <= MAX_ACKED_IDS) break;
              ackedIds.delete(id);
            }
            const recovery = afterAck(s.recovery, frame.offset, frame.epoch);
            if (recovery !== s.recovery) set({ recovery });
            update(m.key, {
              status: 'sent',
              messageId: frame.message_id,
              offset: frame.offset,
              epoch: frame.epoch,
              error: undefined,
              fadeStartedAt: startFade(m.key),
            });
            return;
          }
          case 'error': {
            // With an id the error is about that message alone (which may be gone already);
            // without one, the server answers frames in order, so it is the oldest on the wire.
            const target =
              frame.client_msg_id === undefined
                ? s.messages.find((x) => x.own && x.status === 'sending')
                : s.messages.find((x) => x.own && x.key === frame.client_msg_id);
            if (target !== undefined) {
              failMessage(target.key, frame.message);
            } else {
              get().showNotice(frame.message);
            }
            return;
          }
        }
      },

      failInFlight(reason) {
        for (const m of get().messages) {
          if (m.own && m.status === 'sending') failMessage(m.key, reason);
        }
      },

      requeueInFlight() {
        for (const m of get().messages) {
          if (m.own && m.status === 'sending') {
            clearTimer(ackTimers, m.key);
            update(m.key, { status: 'queued' });
          }
        }
      },

      dismissMissedNotice() {
        clearTimeout(missedTimer);
        missedTimer = undefined;
        set({ missedNotice: null });
      },

      requeue(key) {
        const m = get().messages.find((x) => x.key === key);
        if (m === undefined || m.status !== 'failed') return;
        update(key, { status: 'queued', error: undefined });
      },

      dismiss(key) {
        remove(key);
      },

      queued() {
        return get().messages.filter((m) => m.own && m.status === 'queued');
      },

      showNotice(text) {
        if (noticeTimer !== undefined) clearTimeout(noticeTimer);
        noticeSeq += 1;
        set({ notice: { id: noticeSeq, text } });
        noticeTimer = setTimeout(() => {
          noticeTimer = undefined;
          set({ notice: null });
        }, NOTICE_MS);
      },

      clearNotice() {
        if (noticeTimer !== undefined) clearTimeout(noticeTimer);
        noticeTimer = undefined;
        set({ notice: null });
      },
    };
  });
}
