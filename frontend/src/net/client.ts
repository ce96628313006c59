// Owns the WebSocket to /api/chat: connects, reconnects with backoff (resuming the
// channel's history from the last offset seen), sends queued messages once connected,
// sends the pointer as cursor frames and feeds every server frame into the store.

import { AUTH_CLOSE_CODES, encodeAuth } from './auth';
import { backoffDelay } from '../lib/backoff';
import { hasGap, MAX_AHEAD } from '../lib/history';
import {
  checkPayload,
  encodeChat,
  encodeCursor,
  parseServerFrame,
  type Position,
  type StreamPosition,
} from '../lib/protocol';
import { newClientMsgId } from '../lib/ids';
import { Throttle } from '../lib/throttle';
import type { CanvasMessage, ChatStore } from '../state/store';

/** The part of the browser WebSocket this client uses (tests provide a fake). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type SocketFactory = (url: string) => SocketLike;

/** The socket URL, resuming after `since` when the page has seen some of the history. */
export type UrlFor = (since: StreamPosition | null) => string;

const OPEN = 1;
const CONNECTING = 0;

/** Consecutive failed attempts after which the client stops and offers a retry button. */
export const MAX_ATTEMPTS = 12;
/** A connection attempt that neither opens nor fails within this is abandoned. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Cursor frames sent per second at most (the gateway forwards 20 by default). */
export const CURSOR_INTERVAL_MS = 50;
/**
 * Close codes after which the page reconnects at once and shows nothing: the gateway moved
 * the connection (4000, rebalance) or is going away (1001, drain); history recovery makes
 * the move lossless. A second such close within this time goes through the usual backoff.
 */
export const HANDOVER_CODES: ReadonlySet<number> = new Set([4000, 1001]);
export const HANDOVER_MIN_INTERVAL_MS = 2000;
/**
 * A gap in the offsets received that lasts this long means frames were missed (e.g. while
 * the gateway's subscriber reconnected): the page reconnects quietly with `since` to get them.
 */
export const GAP_TIMEOUT_MS = 3000;
/** The gateway refuses coordinates beyond this (docs/gateway.md); the page never sends them. */
export const MAX_COORDINATE = 1_000_000;

function onCanvas(p: Position): Position {
  const clamp = (v: number) => Math.max(-MAX_COORDINATE, Math.min(MAX_COORDINATE, v));
  return { x: clamp(p.x), y: clamp(p.y) };
}

/** JWT mode: the token each connection sends first. */
export interface ClientAuth {
  token(): string | null;
}

export interface ChatClientOptions {
  store: ChatStore;
  url: UrlFor;
  createSocket?: SocketFactory;
  random?: () => number;
  newId?: () => string;
  maxAttempts?: number;
  auth?: ClientAuth;
}

export type SendResult =
  | { ok: true; message: CanvasMessage }
  | { ok: false; problem: 'empty' | 'too_large' };

export class ChatClient {
  private readonly store: ChatStore;
  private readonly url: UrlFor;
  private readonly createSocket: SocketFactory;
  private readonly random: () => number;
  private readonly newId: () => string;
  private readonly maxAttempts: number;
  private readonly auth: ClientAuth | undefined;
  private socket: SocketLike | null = null;
  /** Failed attempts since the last successful open. */
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = true;
  /** When the last quiet reconnect after a handover close happened. */
  private lastHandoverAt = Number.NEGATIVE_INFINITY;
  private readonly cursor = new Throttle<Position>(CURSOR_INTERVAL_MS, (p) => this.sendCursor(p));
  /** False once this connection's gateway refused a cursor frame (it predates cursors). */
  private cursorsAccepted = true;
  private gapTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(opts: ChatClientOptions) {
    this.store = opts.store;
    this.url = opts.url;
    this.createSocket = opts.createSocket ?? ((url) => new WebSocket(url) as unknown as SocketLike);
    this.random = opts.random ?? Math.random;
    this.newId = opts.newId ?? newClientMsgId;
    this.maxAttempts = opts.maxAttempts ?? MAX_ATTEMPTS;
    this.auth = opts.auth;
  }

  /** JWT mode: a fresh token for the open connection, before the previous one expires. */
  sendAuth(token: string): void {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN) return;
    try {
      socket.send(encodeAuth(token));
    } catch {
      // Closing: the next connection sends the current token first anyway.
    }
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.failures = 0;
    this.connect();
  }

  /** Closes for good (page leaving, name or channel changed). */
  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.cursor.cancel();
    const s = this.socket;
    this.socket = null;
    if (s !== null) {
      s.onopen = s.onmessage = s.onclose = s.onerror = null;
      s.close(1000, 'client leaving');
    }
    this.store.getState().setConnection({ status: 'idle' });
  }

  /** Reconnects at once instead of waiting out the backoff (button, browser back online). */
  retryNow(): void {
    if (this.stopped) return;
    const status = this.store.getState().connection.status;
    if (status !== 'reconnecting' && status !== 'failed') return;
    if (status === 'failed') this.failures = 0;
    this.clearTimers();
    this.connect();
  }

  /** Puts the text on the canvas at once and sends it now, or when connected. */
  send(text: string, at: Position): SendResult {
    const position = onCanvas(at);
    const key = this.newId();
    const problem = checkPayload(text, position, key);
    if (problem !== null) return { ok: false, problem };
    const message = this.store.getState().compose(key, text, position);
    this.flush();
    return { ok: true, message };
  }

  retry(key: string): void {
    this.store.getState().requeue(key);
    this.flush();
  }

  /** The pointer moved to `position` (canvas coordinates); sent throttled, never queued. */
  moveCursor(position: Position): void {
    if (this.cursorsAccepted && this.socket?.readyState === OPEN) this.cursor.push(onCanvas(position));
  }

  /** `quiet`: a handover; the page keeps showing "connected" unless this attempt fails. */
  private connect(quiet = false): void {
    this.clearTimers();
    const state = this.store.getState();
    if (!quiet) state.setConnection({ status: 'connecting', attempt: this.failures });
    const since = state.recoveryPoint();
    state.beginConnection(since !== null);
    let socket: SocketLike;
    try {
      socket = this.createSocket(this.url(since));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    this.connectTimer = setTimeout(() => {
      if (this.socket === socket && socket.readyState === CONNECTING) {
        this.dropSocket(socket);
        this.scheduleReconnect();
      }
    }, CONNECT_TIMEOUT_MS);

    let opened = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      opened = true;
      const token = this.auth?.token() ?? null;
      if (token !== null) socket.send(encodeAuth(token));
      // Every connection may reach another gateway version (rolling update).
      this.cursorsAccepted = true;
      clearTimeout(this.connectTimer);
      this.failures = 0;
      this.store.getState().setConnection({ status: 'connected' });
      this.flush();
    };
    socket.onmessage = (ev) => {
      if (this.socket !== socket || typeof ev.data !== 'string') return;
      const frame = parseServerFrame(ev.data);
      if (frame === null) return;
      // Only chat and cursor frames are ever sent; a gateway from before cursors refuses the
      // latter as an unsupported type without a client_msg_id. Stop sending them instead of
      // showing the user an error about something they did not do.
      if (frame.type === 'error' && frame.code === 'unsupported_type' && frame.client_msg_id === undefined) {
        this.cursorsAccepted = false;
        this.cursor.cancel();
        return;
      }
      this.store.getState().receive(frame);
      this.watchGap(socket);
    };
    socket.onerror = () => {
      // A close event always follows; reconnecting is handled there.
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.dropSocket(socket);
      this.cursor.cancel();
      const state = this.store.getState();
      // A gateway with history de-duplicates by client_msg_id, so resending is safe.
      if (state.recovery !== null) state.requeueInFlight();
      else state.failInFlight('The connection closed before the server confirmed this message.');
      if (this.auth !== undefined && AUTH_CLOSE_CODES.has(ev.code)) {
        // Retrying with the same token cannot help: say so and wait for the user.
        state.setConnection({
          status: 'failed',
          reason:
            ev.code === 4403
              ? 'Signed out of this channel: your sign-in does not give access to it.'
              : 'Signed out: your sign-in was refused or has expired. Sign in again, then reload.',
        });
        return;
      }
      const now = Date.now();
      if (opened && HANDOVER_CODES.has(ev.code) && now - this.lastHandoverAt >= HANDOVER_MIN_INTERVAL_MS) {
        this.lastHandoverAt = now;
        this.connect(true);
        return;
      }
      this.scheduleReconnect();
    };
  }

  /** Starts the gap timer when offsets jump, stops it once the gap is filled. */
  private watchGap(socket: SocketLike): void {
    const state = this.store.getState().recovery;
    if (!hasGap(state)) {
      clearTimeout(this.gapTimer);
      this.gapTimer = undefined;
      return;
    }
    if ((state?.ahead?.length ?? 0) > MAX_AHEAD) {
      this.resync(socket);
      return;
    }
    if (this.gapTimer !== undefined) return;
    const missing = (state?.seen ?? 0) + 1;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      const now = this.store.getState().recovery;
      if (this.socket === socket && hasGap(now) && now?.seen !== undefined && now.seen + 1 === missing) this.resync(socket);
    }, GAP_TIMEOUT_MS);
  }

  /** Replaces the connection at once, quietly, to recover missed frames with `since`. */
  private resync(socket: SocketLike): void {
    if (this.socket !== socket) return;
    this.dropSocket(socket);
    this.cursor.cancel();
    this.store.getState().requeueInFlight();
    this.connect(true);
  }

  private sendCursor(position: Position): void {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN) return;
    try {
      socket.send(encodeCursor(position));
    } catch {
      // Closing: a lost cursor position does not matter, the next move sends a new one.
    }
  }

  private dropSocket(socket: SocketLike): void {
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    if (socket.readyState === OPEN || socket.readyState === CONNECTING) socket.close();
    if (this.socket === socket) this.socket = null;
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.clearTimers();
    if (this.failures >= this.maxAttempts) {
      this.store.getState().setConnection({
        status: 'failed',
        reason: `Could not reach the server after ${this.failures} attempts.`,
      });
      return;
    }
    const delay = backoffDelay(this.failures, this.random);
    this.failures += 1;
    this.store.getState().setConnection({
      status: 'reconnecting',
      attempt: this.failures,
      retryAt: Date.now() + delay,
    });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private flush(): void {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN) return;
    const state = this.store.getState();
    for (const m of state.queued()) {
      try {
        socket.send(encodeChat(m.text, m.position, m.key));
      } catch {
        // The socket is closing: this message stays queued for the next connection.
        return;
      }
      state.markSending(m.key);
    }
  }

  private clearTimers(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.gapTimer);
    this.retryTimer = undefined;
    this.connectTimer = undefined;
    this.gapTimer = undefined;
  }
}
