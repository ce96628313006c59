import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, CONNECT_TIMEOUT_MS, type SocketLike } from './client';
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
  drop() {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: '' });
  }
  chats() {
    return this.sent.map((s) => JSON.parse(s) as { type: string; payload: string; client_msg_id: string });
  }
}

const URL = 'ws://test/api/chat?uid=alice&channel=room';
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
    url: URL,
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
