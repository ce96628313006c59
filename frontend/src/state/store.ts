// The chat's state: connection, presence and the messages on the canvas. Everything the
// UI shows comes from here; the network client (net/client.ts) only calls these actions.

import { createStore, type StoreApi } from 'zustand/vanilla';
import type { Position, ServerFrame } from '../lib/protocol';

/** How long a delivered message stays on the canvas. */
export const FADE_MS = 5000;
/** An own message with no ack after this long is marked failed (it can be retried). */
export const ACK_TIMEOUT_MS = 10_000;
/** Own messages not yet confirmed (queued, sending or failed) kept at most. */
export const MAX_UNSENT = 50;
/** Messages kept on the canvas at most; the oldest delivered ones go first. */
export const MAX_MESSAGES = 500;
const NOTICE_MS = 8000;

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
  /** Set when the fade starts (Date.now()); the message is removed FADE_MS later. */
  fadeStartedAt?: number;
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

  setIdentity(userId: string, channel: string): void;
  setConnection(connection: ConnectionState): void;
  /** Adds an own message in state `queued`, or `failed` when too many are unsent. */
  compose(key: string, text: string, position: Position): CanvasMessage;
  markSending(key: string): void;
  receive(frame: ServerFrame): void;
  /** The connection closed: whatever was on the wire without an ack is now failed. */
  failInFlight(reason: string): void;
  /** Puts a failed message back in the queue. */
  requeue(key: string): void;
  dismiss(key: string): void;
  queued(): CanvasMessage[];
  showNotice(text: string): void;
  clearNotice(): void;
}

export type ChatStore = StoreApi<ChatState>;

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
  let noticeSeq = 0;

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

    const startFade = (key: string) => {
      clearTimer(fadeTimers, key);
      fadeTimers.set(
        key,
        setTimeout(() => {
          fadeTimers.delete(key);
          remove(key);
        }, FADE_MS),
      );
      return Date.now();
    };

    /** Adds a message, dropping the oldest delivered ones beyond MAX_MESSAGES. */
    const add = (message: CanvasMessage) => {
      const messages = [...get().messages, message];
      let excess = messages.length - MAX_MESSAGES;
      const dropped: string[] = [];
      for (const m of messages) {
        if (excess <= 0) break;
        if (!isUnsent(m) && m.key !== message.key) {
          dropped.push(m.key);
          excess--;
        }
      }
      for (const key of dropped) {
        clearTimer(fadeTimers, key);
        clearTimer(ackTimers, key);
      }
      set({ messages: dropped.length ? messages.filter((m) => !dropped.includes(m.key)) : messages });
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
    };

    return {
      userId: null,
      channel: null,
      connection: { status: 'idle' },
      users: [],
      messages: [],
      notice: null,

      setIdentity(userId, channel) {
        resetAll();
        set({ userId, channel, users: [], messages: [], notice: null, connection: { status: 'idle' } });
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
          case 'user_sync':
            set({ users: sortedUnique(frame.users) });
            return;
          case 'user_joined':
            set({ users: sortedUnique([...s.users, frame.user_id]) });
            return;
          case 'user_left':
            set({ users: s.users.filter((u) => u !== frame.user_id) });
            return;
          case 'chat': {
            if (s.messages.some((m) => m.key === frame.message_id)) return;
            add({
              key: frame.message_id,
              own: false,
              userId: frame.user_id,
              text: frame.payload,
              position: frame.position,
              status: 'received',
              messageId: frame.message_id,
              fadeStartedAt: startFade(frame.message_id),
            });
            return;
          }
          case 'ack': {
            const m = s.messages.find((x) => x.own && x.key === frame.client_msg_id);
            // A late ack after a timeout still proves delivery; a retried copy may be queued.
            if (m === undefined || m.status === 'sent') return;
            clearTimer(ackTimers, m.key);
            update(m.key, {
              status: 'sent',
              messageId: frame.message_id,
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
