import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, MAX_COORDINATE, type SocketLike } from './client';
import { createChatStore, type ChatStore } from '../state/store';

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: string[] = [];
  onopen: SocketLike['onopen'] = null;
  onmessage: SocketLike['onmessage'] = null;
  onclose: SocketLike['onclose'] = null;
  onerror: SocketLike['onerror'] = null;

  send(data: string) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  drop(code: number) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  frames() {
    return this.sent.map((s) => JSON.parse(s) as Record<string, unknown>);
  }
}

let store: ChatStore;
let sockets: FakeSocket[];
let token: string | null;

function client(withAuth: boolean): ChatClient {
  return new ChatClient({
    store,
    url: () => 'ws://test/api/chat?channel=room',
    createSocket: () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    random: () => 0,
    newId: () => 'c-1',
    auth: withAuth ? { token: () => token } : undefined,
  });
}

beforeEach(() => {
  vi.useFakeTimers();
  store = createChatStore();
  store.getState().setIdentity('alice', 'room');
  sockets = [];
  token = 'tok.en.1';
});

afterEach(() => {
  vi.useRealTimers();
});

describe('JWT mode', () => {
  it('sends the token first on every connection, and fresh ones on the open one', () => {
    const c = client(true);
    c.start();
    c.send('queued before open', { x: 1, y: 2 });
    sockets[0]?.open();
    const frames = sockets[0]?.frames() ?? [];
    expect(frames[0]).toEqual({ type: 'auth', token: 'tok.en.1' });
    expect(frames[1]?.type).toBe('chat');
    c.sendAuth('tok.en.2');
    expect(sockets[0]?.frames().at(-1)).toEqual({ type: 'auth', token: 'tok.en.2' });
    // A drop reconnects with the token current then.
    token = 'tok.en.3';
    sockets[0]?.drop(1006);
    vi.runOnlyPendingTimers();
    sockets[1]?.open();
    expect(sockets[1]?.frames()[0]).toEqual({ type: 'auth', token: 'tok.en.3' });
    c.stop();
  });

  it.each([4401, 4403])('a %i close is a signed-out state, not a reconnect loop', (code) => {
    const c = client(true);
    c.start();
    sockets[0]?.open();
    sockets[0]?.drop(code);
    const connection = store.getState().connection;
    expect(connection.status).toBe('failed');
    expect(connection.status === 'failed' ? connection.reason : '').toMatch(/^Signed out/);
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
    c.stop();
  });

  it('anonymous mode sends no auth frame and reconnects after any close', () => {
    const c = client(false);
    c.start();
    sockets[0]?.open();
    expect(sockets[0]?.sent).toEqual([]);
    sockets[0]?.drop(4401);
    vi.runOnlyPendingTimers();
    expect(sockets).toHaveLength(2);
    c.stop();
  });
});

describe('positions', () => {
  it('stay within the range the gateway accepts', () => {
    const c = client(false);
    c.start();
    sockets[0]?.open();
    c.send('far away', { x: 5e9, y: -5e9 });
    const chat = sockets[0]?.frames()[0] as { position: { x: number; y: number } };
    expect(chat.position).toEqual({ x: MAX_COORDINATE, y: -MAX_COORDINATE });
    c.stop();
  });
});
