// Wire protocol of /api/chat (see docs/design.md, "Wire protocol"). Parsing is
// defensive: the server is trusted, but a frame we cannot understand must never
// crash the page, so it is reported as `null` and ignored by the caller.

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

export interface UserSync {
  type: 'user_sync';
  channel_id: string;
  users: string[];
  timestamp?: string;
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
}

export interface Ack {
  type: 'ack';
  client_msg_id: string;
  message_id: string;
  timestamp?: string;
}

export interface ServerError {
  type: 'error';
  code: string;
  message: string;
  client_msg_id?: string;
}

export type ServerFrame = UserSync | UserJoined | UserLeft | ChatIn | Ack | ServerError;

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

export function parsePosition(v: unknown): Position | null {
  if (!isObject(v)) return null;
  const { x, y } = v;
  if (typeof x !== 'number' || typeof y !== 'number') return null;
  if (!Number.isFinite(x) || !Number.isFinite(y)) return null;
  return { x, y };
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
      return { type: 'user_sync', channel_id, users, ...optionalTimestamp(raw) };
    }
    case 'user_joined':
    case 'user_left': {
      const channel_id = str(raw, 'channel_id');
      const user_id = str(raw, 'user_id');
      if (channel_id === undefined || user_id === undefined) return null;
      return { type: raw.type, channel_id, user_id, ...optionalTimestamp(raw) };
    }
    case 'chat': {
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
      return { type: 'chat', message_id, channel_id, user_id, payload, position, ...optionalTimestamp(raw) };
    }
    case 'ack': {
      const client_msg_id = str(raw, 'client_msg_id');
      const message_id = str(raw, 'message_id');
      if (client_msg_id === undefined || message_id === undefined) return null;
      return { type: 'ack', client_msg_id, message_id, ...optionalTimestamp(raw) };
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

/** WebSocket URL on the page's own origin, ws: or wss: to match the page. */
export function chatUrl(location: { protocol: string; host: string }, uid: string, channel: string): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams({ uid, channel });
  return `${scheme}//${location.host}/api/chat?${query.toString()}`;
}
