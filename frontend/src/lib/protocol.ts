// Wire protocol of /api/chat (see docs/gateway.md: "Wire protocol", "Guarantees",
// "Cursors"). Parsing is defensive: the server is trusted, but a frame we cannot
// understand must never crash the page, so it is reported as `null` and ignored by the
// caller. Fields added by later gateways (offset, epoch) are optional, so the page keeps
// working against a gateway that does not send them.

export interface Position {
  x: number;
  y: number;
}

export interface ChatOut {
  type: 'chat';
  payload: string;
  position: Position;
  client_msg_id?: string;
}

/** Where a channel's history stands: offsets only compare within one epoch. */
export interface StreamPosition {
  epoch: string;
  offset: number;
}

export interface UserSync {
  type: 'user_sync';
  channel_id: string;
  users: string[];
  timestamp?: string;
  /** The channel's history epoch and latest offset when this was sent. */
  epoch?: string;
  offset?: number;
}

export interface UserJoined {
  type: 'user_joined';
  channel_id: string;
  user_id: string;
  timestamp?: string;
}

export interface UserLeft {
  type: 'user_left';
  channel_id: string;
  user_id: string;
  timestamp?: string;
}

export interface ChatIn {
  type: 'chat';
  message_id: string;
  channel_id: string;
  user_id: string;
  payload: string;
  position: Position;
  timestamp?: string;
  offset?: number;
  epoch?: string;
}

export interface Ack {
  type: 'ack';
  client_msg_id: string;
  message_id: string;
  timestamp?: string;
  offset?: number;
  epoch?: string;
}

/** Always the frame right after `user_sync` on a gateway with history. */
export interface History {
  type: 'history';
  channel_id: string;
  epoch: string;
  /** True when `messages` are every message after the `since` the page asked for. */
  recovered: boolean;
  /** Oldest first. */
  messages: ChatIn[];
}

export interface CursorIn {
  type: 'cursor';
  channel_id: string;
  user_id: string;
  position: Position;
}

export interface ServerError {
  type: 'error';
  code: string;
  message: string;
  client_msg_id?: string;
}

export type ServerFrame = UserSync | UserJoined | UserLeft | ChatIn | Ack | ServerError | History | CursorIn;

/** Largest client frame the gateway accepts by default (CANVASCHAT_MAX_MESSAGE_BYTES). */
export const MAX_FRAME_BYTES = 4096;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Json, key: string): string | undefined {
  const v = o[key];
  return typeof v === 'string' ? v : undefined;
}

function optionalTimestamp(o: Json): { timestamp?: string } {
  const t = str(o, 'timestamp');
  return t === undefined ? {} : { timestamp: t };
}

/** Offsets are non-negative integers; anything else is treated as absent. */
function offsetOf(o: Json): number | undefined {
  const v = o.offset;
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** `offset` and `epoch` when the frame carries them (a gateway with history). */
function optionalStream(o: Json): { offset?: number; epoch?: string } {
  const offset = offsetOf(o);
  const epoch = str(o, 'epoch');
  return { ...(offset === undefined ? {} : { offset }), ...(epoch === undefined ? {} : { epoch }) };
}

export function parsePosition(v: unknown): Position | null {
  if (!isObject(v)) return null;
  const { x, y } = v;
  if (typeof x !== 'number' || typeof y !== 'number') return null;
  if (!Number.isFinite(x) || !Number.isFinite(y)) return null;
  return { x, y };
}

function parseChat(raw: Json): ChatIn | null {
  const message_id = str(raw, 'message_id');
  const channel_id = str(raw, 'channel_id');
  const user_id = str(raw, 'user_id');
  const payload = str(raw, 'payload');
  const position = parsePosition(raw.position);
  if (
    message_id === undefined ||
    channel_id === undefined ||
    user_id === undefined ||
    payload === undefined ||
    position === null
  ) {
    return null;
  }
  return {
    type: 'chat',
    message_id,
    channel_id,
    user_id,
    payload,
    position,
    ...optionalTimestamp(raw),
    ...optionalStream(raw),
  };
}

/** Parses one text frame from the server; `null` for anything malformed or unknown. */
export function parseServerFrame(text: string): ServerFrame | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(raw)) return null;
  switch (raw.type) {
    case 'user_sync': {
      const channel_id = str(raw, 'channel_id');
      const users = raw.users;
      if (channel_id === undefined || !Array.isArray(users)) return null;
      if (!users.every((u): u is string => typeof u === 'string')) return null;
      return { type: 'user_sync', channel_id, users, ...optionalTimestamp(raw), ...optionalStream(raw) };
    }
    case 'user_joined':
    case 'user_left': {
      const channel_id = str(raw, 'channel_id');
      const user_id = str(raw, 'user_id');
      if (channel_id === undefined || user_id === undefined) return null;
      return { type: raw.type, channel_id, user_id, ...optionalTimestamp(raw) };
    }
    case 'chat':
      return parseChat(raw);
    case 'history': {
      const channel_id = str(raw, 'channel_id');
      const epoch = str(raw, 'epoch');
      const { recovered, messages } = raw;
      if (channel_id === undefined || epoch === undefined || typeof recovered !== 'boolean') return null;
      if (!Array.isArray(messages)) return null;
      // One malformed entry must not cost the others: it is left out, and the page
      // says some messages may be missing.
      const parsed = messages.map((m) => (isObject(m) ? parseChat(m) : null));
      const valid = parsed.filter((m): m is ChatIn => m !== null);
      return { type: 'history', channel_id, epoch, recovered: recovered && valid.length === parsed.length, messages: valid };
    }
    case 'cursor': {
      const channel_id = str(raw, 'channel_id');
      const user_id = str(raw, 'user_id');
      const position = parsePosition(raw.position);
      if (channel_id === undefined || user_id === undefined || position === null) return null;
      return { type: 'cursor', channel_id, user_id, position };
    }
    case 'ack': {
      const client_msg_id = str(raw, 'client_msg_id');
      const message_id = str(raw, 'message_id');
      if (client_msg_id === undefined || message_id === undefined) return null;
      return { type: 'ack', client_msg_id, message_id, ...optionalTimestamp(raw), ...optionalStream(raw) };
    }
    case 'error': {
      const code = str(raw, 'code') ?? 'unknown';
      const message = str(raw, 'message') ?? code;
      const client_msg_id = str(raw, 'client_msg_id');
      return client_msg_id === undefined
        ? { type: 'error', code, message }
        : { type: 'error', code, message, client_msg_id };
    }
    default:
      return null;
  }
}

export function encodeChat(payload: string, position: Position, clientMsgId: string): string {
  const frame: ChatOut = { type: 'chat', payload, position, client_msg_id: clientMsgId };
  return JSON.stringify(frame);
}

export function encodeCursor(position: Position): string {
  return JSON.stringify({ type: 'cursor', position });
}

const encoder = new TextEncoder();

export function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

export type PayloadProblem = 'empty' | 'too_large';

/**
 * Checks a payload before sending. The gateway closes the connection on frames over its
 * limit, so an oversized message must never leave the browser.
 */
export function checkPayload(payload: string, position: Position, clientMsgId: string): PayloadProblem | null {
  if (payload.trim().length === 0) return 'empty';
  if (utf8Length(encodeChat(payload, position, clientMsgId)) > MAX_FRAME_BYTES) return 'too_large';
  return null;
}

/**
 * WebSocket URL on the page's own origin, ws: or wss: to match the page. With `since`,
 * the gateway replays every message after that offset of that epoch in its history frame.
 */
export function chatUrl(
  location: { protocol: string; host: string },
  uid: string,
  channel: string,
  since: StreamPosition | null = null,
): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams({ uid, channel });
  if (since !== null) {
    query.set('since', String(since.offset));
    query.set('epoch', since.epoch);
  }
  return `${scheme}//${location.host}/api/chat?${query.toString()}`;
}
