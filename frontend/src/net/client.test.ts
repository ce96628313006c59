import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, CONNECT_TIMEOUT_MS, CURSOR_INTERVAL_MS, GAP_TIMEOUT_MS, type SocketLike } from './client';
import type { StreamPosition } from '../lib/protocol';
import { createChatStore, type ChatStore } from '../state/store';

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: string[] = [];
  closedWith: number | undefined;
  onopen: SocketLike['onopen'] = null;
  onmessage: SocketLike['onmessage'] = null;
  onclose: SocketLike['onclose'] = null;
  onerror: SocketLike['onerror'] = null;

  constructor(readonly url: string) {}

  send(data: string) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(data);
  }
  close(code?: number) {
    this.closedWith = code ?? 1005;
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  serverSends(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    if (code === 1006) this.onerror?.({});
    this.onclose?.({ code, reason });
  }
  chats() {
    return this.sent.map((s) => JSON.parse(s) as { type: string; payload: string; client_msg_id: string });
  }
}

const URL = 'ws://test/api/chat?uid=alice&channel=room';
const urlFor = (since: StreamPosition | null) => (since === null ? URL : `${URL}&since=${since.offset}&epoch=${since.epoch}`);
let store: ChatStore;
let sockets: FakeSocket[];
let client: ChatClient;
let ids: number;
const latest = () => {
  const s = sockets.at(-1);
  if (s === undefined) throw new Error('no socket yet');
  return s;
};
const conn = () => store.getState().connection;

beforeEach(() => {
  vi.useFakeTimers();
  store = createChatStore();
  store.getState().setIdentity('alice', 'room');
  sockets = [];
  ids = 0;
  client = new ChatClient({
    store,
    url: urlFor,
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    random: () => 0,
    newId: () => `c-${++ids}`,
    maxAttempts: 4,
  });
});

afterEach(() => {
  client.stop();
  vi.useRealTimers();
});

describe('connecting', () => {
  it('connects to the URL and reports connecting then connected', () => {
    client.start();
    expect(latest().url).toBe(URL);
    expect(conn()).toEqual({ status: 'connecting', attempt: 0 });
    latest().open();
    expect(conn()).toEqual({ status: 'connected' });
  });

  it('feeds server frames to the store and ignores garbage', () => {
    client.start();
    latest().open();
    latest().serverSends({ type: 'user_sync', channel_id: 'room', users: ['alice', 'bob'] });
    latest().onmessage?.({ data: 'not json' });
    latest().onmessage?.({ data: new ArrayBuffer(2) });
    expect(store.getState().users).toEqual(['alice', 'bob']);
  });
});

describe('sending', () => {
  it('shows the message at once, sends it and marks it sent on ack', () => {
    client.start();
    latest().open();
    const r = client.send('hello', { x: 5, y: 6 });
    expect(r.ok).toBe(true);
    expect(latest().chats()).toEqual([{ type: 'chat', payload: 'hello', position: { x: 5, y: 6 }, client_msg_id: 'c-1' }]);
    expect(store.getState().messages[0]?.status).toBe('sending');
    latest().serverSends({ type: 'ack', client_msg_id: 'c-1', message_id: 'm-1' });
    expect(store.getState().messages[0]?.status).toBe('sent');
  });

  it('refuses empty and oversized text without touching the canvas', () => {
    client.start();
    latest().open();
    expect(client.send('  ', { x: 0, y: 0 })).toEqual({ ok: false, problem: 'empty' });
    expect(client.send('x'.repeat(5000), { x: 0, y: 0 })).toEqual({ ok: false, problem: 'too_large' });
    expect(store.getState().messages).toEqual([]);
    expect(latest().sent).toEqual([]);
  });

  it('a rate-limited message fails with the server text and can be retried', () => {
    client.start();
    latest().open();
    client.send('spam', { x: 0, y: 0 });
    latest().serverSends({ type: 'error', code: 'rate_limited', message: 'Too many messages', client_msg_id: 'c-1' });
    expect(store.getState().messages[0]).toMatchObject({ status: 'failed', error: 'Too many messages' });
    client.retry('c-1');
    expect(latest().chats().map((c) => c.client_msg_id)).toEqual(['c-1', 'c-1']);
    expect(store.getState().messages[0]?.status).toBe('sending');
  });
});

describe('offline queue', () => {
  it('queues messages typed while connecting or offline and sends them in order on connect', () => {
    client.start();
    client.send('one', { x: 0, y: 0 });
    client.send('two', { x: 1, y: 1 });
    expect(store.getState().messages.map((m) => m.status)).toEqual(['queued', 'queued']);
    latest().open();
    expect(latest().chats().map((c) => c.payload)).toEqual(['one', 'two']);
    expect(store.getState().messages.map((m) => m.status)).toEqual(['sending', 'sending']);
  });

  it('after a drop, in-flight messages fail and messages typed offline go out on reconnect', () => {
    client.start();
    latest().open();
    client.send('in flight', { x: 0, y: 0 });
    latest().drop();
    expect(store.getState().messages[0]?.status).toBe('failed');
    client.send('typed offline', { x: 0, y: 0 });
    expect(store.getState().messages[1]?.status).toBe('queued');
    vi.advanceTimersByTime(1000);
    latest().open();
    expect(latest().chats().map((c) => c.payload)).toEqual(['typed offline']);
  });
});

describe('reconnecting', () => {
  it('backs off 1 s, 2 s, 4 s... then fails and waits for the retry button', () => {
    client.start();
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      latest().drop();
      const c = conn();
      if (c.status !== 'reconnecting') throw new Error(`expected reconnecting, got ${c.status}`);
      expect(c.attempt).toBe(i + 1);
      delays.push(c.retryAt - Date.now());
      const before = sockets.length;
      vi.advanceTimersByTime(c.retryAt - Date.now() - 1);
      expect(sockets.length).toBe(before);
      vi.advanceTimersByTime(1);
      expect(sockets.length).toBe(before + 1);
      expect(conn().status).toBe('connecting');
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000]);
    latest().drop();
    expect(conn()).toMatchObject({ status: 'failed' });
    vi.advanceTimersByTime(120_000);
    expect(sockets).toHaveLength(5);

    client.retryNow();
    expect(sockets).toHaveLength(6);
    latest().open();
    expect(conn().status).toBe('connected');
  });

  it('a successful connection resets the backoff', () => {
    client.start();
    latest().drop();
    vi.advanceTimersByTime(1000);
    latest().drop();
    vi.advanceTimersByTime(2000);
    latest().open();
    latest().drop();
    const c = conn();
    expect(c.status === 'reconnecting' && c.retryAt - Date.now()).toBe(1000);
  });

  it('retryNow skips the countdown', () => {
    client.start();
    latest().drop();
    expect(sockets).toHaveLength(1);
    client.retryNow();
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(5000);
    expect(sockets).toHaveLength(2);
  });

  it('abandons an attempt that hangs and retries', () => {
    client.start();
    vi.advanceTimersByTime(CONNECT_TIMEOUT_MS);
    expect(sockets[0]?.closedWith).toBeDefined();
    expect(conn().status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(sockets).toHaveLength(2);
  });

  it('ignores events from a socket it has replaced', () => {
    client.start();
    const first = latest();
    first.drop();
    vi.advanceTimersByTime(1000);
    first.onmessage?.({ data: JSON.stringify({ type: 'user_sync', channel_id: 'room', users: ['ghost'] }) });
    expect(store.getState().users).toEqual([]);
  });

  it('stop closes the socket and never reconnects', () => {
    client.start();
    latest().open();
    client.stop();
    expect(sockets[0]?.closedWith).toBe(1000);
    expect(conn().status).toBe('idle');
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
  });
});

const EPOCH = 'e1';
const chat = (id: string, offset: number, epoch = EPOCH) => ({
  type: 'chat',
  message_id: id,
  channel_id: 'room',
  user_id: 'bob',
  payload: `msg ${id}`,
  position: { x: 1, y: 2 },
  offset,
  epoch,
});

/** Opens the socket and plays a gateway with history: user_sync then history. */
function welcome(s: FakeSocket, { offset = 0, recovered = false, messages = [] as object[], epoch = EPOCH } = {}) {
  s.open();
  s.serverSends({ type: 'user_sync', channel_id: 'room', users: ['alice', 'bob'], epoch, offset });
  s.serverSends({ type: 'history', channel_id: 'room', epoch, recovered, messages });
}

describe('recovery', () => {
  it('connects as a newcomer first, then reconnects with since/epoch of the last message seen', () => {
    client.start();
    expect(latest().url).toBe(URL);
    welcome(latest(), { offset: 3 });
    latest().serverSends(chat('m-4', 4));
    vi.advanceTimersByTime(6000); // m-4 has faded: recovery starts after it
    latest().drop();
    vi.advanceTimersByTime(1000);
    expect(latest().url).toBe(`${URL}&since=4&epoch=e1`);
  });

  it('messages still on the canvas are asked for again, and come back once', () => {
    client.start();
    welcome(latest(), { offset: 3 });
    latest().serverSends(chat('m-4', 4));
    latest().serverSends(chat('m-5', 5));
    latest().drop();
    vi.advanceTimersByTime(1000);
    expect(latest().url).toBe(`${URL}&since=3&epoch=e1`);
    welcome(latest(), { offset: 6, recovered: true, messages: [chat('m-4', 4), chat('m-5', 5), chat('m-6', 6)] });
    expect(store.getState().messages.map((m) => m.key)).toEqual(['m-4', 'm-5', 'm-6']);
    expect(store.getState().missedNotice).toBeNull();
  });

  it('an incomplete recovery says so; a newcomer is not told', () => {
    client.start();
    welcome(latest(), { offset: 3 });
    expect(store.getState().missedNotice).toBeNull();
    latest().drop();
    vi.advanceTimersByTime(1000);
    welcome(latest(), { offset: 9, recovered: false, epoch: 'e2', messages: [chat('m-9', 9, 'e2')] });
    expect(store.getState().missedNotice).not.toBeNull();
    expect(store.getState().recovery).toEqual({ epoch: 'e2', seen: 9 });
  });

  it('a gateway without history: no since, and in-flight messages fail on a drop as before', () => {
    client.start();
    latest().open();
    latest().serverSends({ type: 'user_sync', channel_id: 'room', users: ['alice'] });
    client.send('hi', { x: 0, y: 0 });
    latest().drop();
    expect(store.getState().messages[0]?.status).toBe('failed');
    vi.advanceTimersByTime(1000);
    expect(latest().url).toBe(URL);
  });

  it('with history, an in-flight message is sent again with the same client_msg_id and shown once', () => {
    client.start();
    welcome(latest(), { offset: 3 });
    client.send('hi', { x: 0, y: 0 });
    latest().drop();
    expect(store.getState().messages[0]?.status).toBe('queued');
    vi.advanceTimersByTime(1000);
    const again = latest();
    // The first copy was published before the drop: history has it, then the resend's ack
    // repeats its message_id.
    const published = { ...chat('m-4', 4), user_id: 'alice', payload: 'hi', position: { x: 0, y: 0 } };
    welcome(again, { offset: 4, recovered: true, messages: [published] });
    expect(again.chats()).toEqual([{ type: 'chat', payload: 'hi', position: { x: 0, y: 0 }, client_msg_id: 'c-1' }]);
    again.serverSends({ type: 'ack', client_msg_id: 'c-1', message_id: 'm-4', offset: 4, epoch: EPOCH });
    expect(store.getState().messages).toHaveLength(1);
    expect(store.getState().messages[0]).toMatchObject({ key: 'c-1', status: 'sent', messageId: 'm-4' });
  });
});

describe('gaps in the offsets', () => {
  it('an ack arriving just before the chat below it is no gap', () => {
    client.start();
    welcome(latest(), { offset: 3 });
    client.send('mine', { x: 0, y: 0 });
    latest().serverSends({ type: 'ack', client_msg_id: 'c-1', message_id: 'm-5', offset: 5, epoch: EPOCH });
    latest().serverSends(chat('m-4', 4));
    vi.advanceTimersByTime(GAP_TIMEOUT_MS * 2);
    expect(sockets).toHaveLength(1);
    expect(store.getState().recovery).toEqual({ epoch: EPOCH, seen: 5 });
  });

  it('a gap that stays is recovered by reconnecting quietly with since', () => {
    client.start();
    welcome(latest(), { offset: 3 });
    latest().serverSends(chat('m-6', 6)); // 4 and 5 never came
    vi.advanceTimersByTime(GAP_TIMEOUT_MS - 1);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    expect(sockets[0]?.closedWith).toBeDefined();
    expect(latest().url).toBe(`${URL}&since=3&epoch=e1`);
    expect(conn()).toEqual({ status: 'connected' });
    welcome(latest(), { offset: 6, recovered: true, messages: [chat('m-4', 4), chat('m-5', 5), chat('m-6', 6)] });
    expect(store.getState().messages.map((m) => m.key).sort()).toEqual(['m-4', 'm-5', 'm-6']);
    expect(store.getState().recovery).toEqual({ epoch: EPOCH, seen: 6 });
  });

  it('a gap filled in time does not reconnect', () => {
    client.start();
    welcome(latest(), { offset: 3 });
    latest().serverSends(chat('m-5', 5));
    vi.advanceTimersByTime(GAP_TIMEOUT_MS / 2);
    latest().serverSends(chat('m-4', 4));
    vi.advanceTimersByTime(GAP_TIMEOUT_MS * 2);
    expect(sockets).toHaveLength(1);
  });
});

describe('handover (rebalance 4000, drain 1001)', () => {
  it.each([4000, 1001])('close %i reconnects at once with since/epoch, showing no state change', (code) => {
    client.start();
    welcome(latest(), { offset: 7 });
    const seen: string[] = [];
    const unsubscribe = store.subscribe((s) => seen.push(s.connection.status));
    latest().drop(code, code === 4000 ? 'rebalance' : 'closing');
    expect(sockets).toHaveLength(2);
    expect(latest().url).toBe(`${URL}&since=7&epoch=e1`);
    welcome(latest(), { offset: 7, recovered: true });
    unsubscribe();
    expect(seen.every((status) => status === 'connected')).toBe(true);
    expect(conn()).toEqual({ status: 'connected' });
    expect(store.getState().missedNotice).toBeNull();
  });

  it('a message typed during the handover goes out on the new connection', () => {
    client.start();
    welcome(latest(), { offset: 7 });
    latest().drop(4000, 'rebalance');
    client.send('during', { x: 0, y: 0 });
    expect(latest().sent).toEqual([]);
    latest().open();
    expect(latest().chats().map((c) => c.payload)).toEqual(['during']);
  });

  it('a handover that fails falls back to the usual backoff, shown as reconnecting', () => {
    client.start();
    welcome(latest(), { offset: 7 });
    latest().drop(4000, 'rebalance');
    latest().drop();
    expect(conn().status).toBe('reconnecting');
  });

  it('a server that keeps closing with 4000 does not get a reconnect loop', () => {
    client.start();
    welcome(latest(), { offset: 7 });
    latest().drop(4000, 'rebalance');
    welcome(latest(), { offset: 7, recovered: true });
    latest().drop(4000, 'rebalance');
    expect(sockets).toHaveLength(2);
    expect(conn().status).toBe('reconnecting');
  });

  it('a socket that never opened is not a handover', () => {
    client.start();
    latest().drop(1001);
    expect(sockets).toHaveLength(1);
    expect(conn().status).toBe('reconnecting');
  });
});

describe('cursor', () => {
  const cursors = (s: FakeSocket) => s.sent.map((f) => JSON.parse(f) as { type: string }).filter((f) => f.type === 'cursor');

  it('sends the pointer throttled, the latest position last, never while offline', () => {
    client.moveCursor({ x: 1, y: 1 });
    client.start();
    client.moveCursor({ x: 2, y: 2 });
    expect(latest().sent).toEqual([]);
    latest().open();
    for (let i = 0; i < 10; i++) {
      client.moveCursor({ x: i, y: i });
      vi.advanceTimersByTime(10);
    }
    vi.advanceTimersByTime(CURSOR_INTERVAL_MS);
    expect(cursors(latest())).toEqual([
      { type: 'cursor', position: { x: 0, y: 0 } },
      { type: 'cursor', position: { x: 4, y: 4 } },
      { type: 'cursor', position: { x: 9, y: 9 } },
    ]);
  });

  it('a gateway without cursors refuses them once: no more are sent, nothing is shown, chats unaffected', () => {
    client.start();
    latest().open();
    client.send('hello', { x: 0, y: 0 });
    client.moveCursor({ x: 1, y: 1 });
    latest().serverSends({ type: 'error', code: 'unsupported_type', message: 'unknown frame type "cursor"' });
    client.moveCursor({ x: 2, y: 2 });
    vi.advanceTimersByTime(CURSOR_INTERVAL_MS * 4);
    client.moveCursor({ x: 3, y: 3 });
    expect(cursors(latest())).toHaveLength(1);
    expect(store.getState().notice).toBeNull();
    expect(store.getState().messages[0]?.status).toBe('sending');
    // The next connection may be a newer gateway: it gets cursors again.
    latest().drop();
    vi.advanceTimersByTime(1000);
    latest().open();
    client.moveCursor({ x: 4, y: 4 });
    expect(cursors(latest())).toHaveLength(1);
  });

  it('a pending position is dropped when the connection closes', () => {
    client.start();
    latest().open();
    client.moveCursor({ x: 1, y: 1 });
    client.moveCursor({ x: 2, y: 2 });
    const first = latest();
    first.drop();
    vi.advanceTimersByTime(1000);
    latest().open();
    vi.advanceTimersByTime(CURSOR_INTERVAL_MS);
    expect(cursors(first)).toHaveLength(1);
    expect(cursors(latest())).toEqual([]);
  });
});
