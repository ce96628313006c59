import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ACK_TIMEOUT_MS, createChatStore, FADE_MS, MAX_MESSAGES, MAX_UNSENT, MISSED_NOTICE_MS, type ChatStore } from './store';
import type { ChatIn, ServerFrame } from '../lib/protocol';

const at = { x: 10, y: 20 };

function chatFrom(user: string, id: string, channel = 'room'): ServerFrame {
  return { type: 'chat', message_id: id, channel_id: channel, user_id: user, payload: `hi from ${user}`, position: at };
}

let store: ChatStore;
const s = () => store.getState();
const byKey = (key: string) => s().messages.find((m) => m.key === key);

beforeEach(() => {
  vi.useFakeTimers();
  store = createChatStore();
  s().setIdentity('alice', 'room');
});

afterEach(() => {
  vi.useRealTimers();
});

describe('own message lifecycle', () => {
  it('queued, sending, acked, then fades out after 5 s', () => {
    const m = s().compose('c-1', 'hello', at);
    expect(m).toMatchObject({ key: 'c-1', own: true, userId: 'alice', status: 'queued' });
    expect(s().queued().map((x) => x.key)).toEqual(['c-1']);

    s().markSending('c-1');
    expect(byKey('c-1')?.status).toBe('sending');
    expect(s().queued()).toEqual([]);

    s().receive({ type: 'ack', client_msg_id: 'c-1', message_id: 'm-1' });
    expect(byKey('c-1')).toMatchObject({ status: 'sent', messageId: 'm-1' });
    expect(byKey('c-1')?.fadeStartedAt).toBe(Date.now());

    vi.advanceTimersByTime(FADE_MS - 1);
    expect(byKey('c-1')).toBeDefined();
    vi.advanceTimersByTime(1);
    expect(byKey('c-1')).toBeUndefined();
  });

  it('a pending message does not fade', () => {
    s().compose('c-1', 'hello', at);
    s().markSending('c-1');
    vi.advanceTimersByTime(FADE_MS * 1.5);
    expect(byKey('c-1')?.status).toBe('sending');
  });

  it('an error naming the client_msg_id fails that message with the server text', () => {
    s().compose('c-1', 'one', at);
    s().compose('c-2', 'two', at);
    s().markSending('c-1');
    s().markSending('c-2');
    s().receive({ type: 'error', code: 'rate_limited', message: 'Rate limit: 100 per minute', client_msg_id: 'c-2' });
    expect(byKey('c-2')).toMatchObject({ status: 'failed', error: 'Rate limit: 100 per minute' });
    expect(byKey('c-1')?.status).toBe('sending');
    // Failed messages stay until retried or dismissed.
    vi.advanceTimersByTime(FADE_MS * 2);
    expect(byKey('c-2')?.status).toBe('failed');
  });

  it('an error without client_msg_id fails the oldest pending message', () => {
    s().compose('c-1', 'one', at);
    s().compose('c-2', 'two', at);
    s().markSending('c-1');
    s().markSending('c-2');
    s().receive({ type: 'error', code: 'invalid_message', message: 'bad frame' });
    expect(byKey('c-1')).toMatchObject({ status: 'failed', error: 'bad frame' });
    expect(byKey('c-2')?.status).toBe('sending');
    expect(s().notice).toBeNull();
  });

  it('an error naming an unknown client_msg_id fails nothing else and becomes a notice', () => {
    s().compose('c-1', 'one', at);
    s().markSending('c-1');
    s().receive({ type: 'error', code: 'rate_limited', message: 'slow down', client_msg_id: 'c-gone' });
    expect(byKey('c-1')?.status).toBe('sending');
    expect(s().notice?.text).toBe('slow down');
  });

  it('an error with nothing pending becomes a notice that goes away', () => {
    s().receive({ type: 'error', code: 'invalid_message', message: 'something odd' });
    expect(s().notice?.text).toBe('something odd');
    vi.advanceTimersByTime(10_000);
    expect(s().notice).toBeNull();
  });

  it('retry puts a failed message back in the queue; dismiss removes it', () => {
    s().compose('c-1', 'one', at);
    s().markSending('c-1');
    s().receive({ type: 'error', code: 'invalid_message', message: 'nope', client_msg_id: 'c-1' });
    s().requeue('c-1');
    expect(byKey('c-1')).toMatchObject({ status: 'queued', error: undefined });
    expect(s().queued().map((m) => m.key)).toEqual(['c-1']);
    s().requeue('c-1');
    expect(byKey('c-1')?.status).toBe('queued');
    s().dismiss('c-1');
    expect(s().messages).toEqual([]);
  });

  it('a message without ack in time fails; a late ack still counts', () => {
    s().compose('c-1', 'one', at);
    s().markSending('c-1');
    vi.advanceTimersByTime(ACK_TIMEOUT_MS);
    expect(byKey('c-1')?.status).toBe('failed');
    s().receive({ type: 'ack', client_msg_id: 'c-1', message_id: 'm-1' });
    expect(byKey('c-1')?.status).toBe('sent');
  });

  it('an ack cancels the ack timeout', () => {
    s().compose('c-1', 'one', at);
    s().markSending('c-1');
    s().receive({ type: 'ack', client_msg_id: 'c-1', message_id: 'm-1' });
    // Only the fade timer is left.
    expect(vi.getTimerCount()).toBe(1);
    expect(byKey('c-1')?.status).toBe('sent');
  });

  it('failInFlight fails only messages on the wire, queued ones stay queued', () => {
    s().compose('c-1', 'on the wire', at);
    s().markSending('c-1');
    s().compose('c-2', 'typed offline', at);
    s().failInFlight('connection lost');
    expect(byKey('c-1')).toMatchObject({ status: 'failed', error: 'connection lost' });
    expect(byKey('c-2')?.status).toBe('queued');
  });
});

describe('offline queue', () => {
  it('keeps queued messages in typing order', () => {
    s().compose('c-1', 'one', at);
    s().compose('c-2', 'two', at);
    s().compose('c-3', 'three', at);
    expect(s().queued().map((m) => m.text)).toEqual(['one', 'two', 'three']);
  });

  it('is bounded: past MAX_UNSENT a new message fails at once', () => {
    for (let i = 0; i < MAX_UNSENT; i++) s().compose(`c-${i}`, `m${i}`, at);
    const extra = s().compose('c-extra', 'one too many', at);
    expect(extra.status).toBe('failed');
    expect(extra.error).toMatch(/unsent/);
    expect(s().queued()).toHaveLength(MAX_UNSENT);
  });
});

describe('received messages', () => {
  it('appear at their position and fade out after 5 s', () => {
    s().receive(chatFrom('bob', 'm-1'));
    expect(byKey('m-1')).toMatchObject({ own: false, userId: 'bob', status: 'received', position: at });
    vi.advanceTimersByTime(FADE_MS);
    expect(byKey('m-1')).toBeUndefined();
  });

  it('ignores duplicates and other channels', () => {
    s().receive(chatFrom('bob', 'm-1'));
    s().receive(chatFrom('bob', 'm-1'));
    s().receive(chatFrom('bob', 'm-2', 'elsewhere'));
    expect(s().messages.map((m) => m.key)).toEqual(['m-1']);
  });

  it('keeps at most MAX_MESSAGES, dropping the oldest delivered but never unsent own ones', () => {
    s().compose('c-mine', 'mine', at);
    for (let i = 0; i < MAX_MESSAGES + 10; i++) s().receive(chatFrom('bob', `m-${i}`));
    expect(s().messages).toHaveLength(MAX_MESSAGES);
    expect(byKey('c-mine')?.status).toBe('queued');
    expect(byKey('m-0')).toBeUndefined();
    expect(byKey(`m-${MAX_MESSAGES + 9}`)).toBeDefined();
  });
});

describe('presence', () => {
  it('follows user_sync, user_joined and user_left', () => {
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['carol', 'alice'] });
    expect(s().users).toEqual(['alice', 'carol']);
    s().receive({ type: 'user_joined', channel_id: 'room', user_id: 'bob' });
    s().receive({ type: 'user_joined', channel_id: 'room', user_id: 'bob' });
    expect(s().users).toEqual(['alice', 'bob', 'carol']);
    s().receive({ type: 'user_left', channel_id: 'room', user_id: 'carol' });
    expect(s().users).toEqual(['alice', 'bob']);
    s().receive({ type: 'user_left', channel_id: 'room', user_id: 'nobody' });
    expect(s().users).toEqual(['alice', 'bob']);
  });

  it("while connected, the page's own user stays online whatever an older connection's departure says", () => {
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice', 'bob'] });
    s().receive({ type: 'user_left', channel_id: 'room', user_id: 'alice' });
    expect(s().users).toEqual(['bob']);
    s().setConnection({ status: 'connected' });
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice', 'bob'] });
    s().receive({ type: 'user_left', channel_id: 'room', user_id: 'alice' });
    expect(s().users).toEqual(['alice', 'bob']);
  });

  it('a new user_sync replaces the list (after a reconnect)', () => {
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice', 'bob'] });
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice'] });
    expect(s().users).toEqual(['alice']);
  });

  it('setIdentity starts afresh and cancels pending fades', () => {
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice', 'bob'] });
    s().receive(chatFrom('bob', 'm-1'));
    s().setIdentity('alice', 'other');
    expect(s()).toMatchObject({ users: [], messages: [], channel: 'other' });
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('history and recovery', () => {
  const sent = (ms: number) => new Date(Date.now() - ms).toISOString();
  const chatAt = (id: string, offset: number, ageMs: number, user = 'bob'): ChatIn => ({
    type: 'chat',
    message_id: id,
    channel_id: 'room',
    user_id: user,
    payload: id,
    position: at,
    offset,
    epoch: 'e1',
    timestamp: sent(ageMs),
  });

  it('shows history messages with the fade time they have left, by the server clock', () => {
    // The server's clock is 10 s ahead of ours: ages are measured on its clock.
    const serverNow = new Date(Date.now() + 10_000).toISOString();
    s().beginConnection(false);
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice', 'bob'], epoch: 'e1', offset: 2, timestamp: serverNow });
    const m1 = { ...chatAt('m-1', 1, 0), timestamp: new Date(Date.now() + 10_000 - 3000).toISOString() };
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e1', recovered: false, messages: [m1] });
    expect(byKey('m-1')?.fadeStartedAt).toBe(Date.now() - 3000);
    expect(s().recovery).toEqual({ epoch: 'e1', seen: 2 });
    vi.advanceTimersByTime(FADE_MS - 3000 - 1);
    expect(byKey('m-1')).toBeDefined();
    vi.advanceTimersByTime(1);
    expect(byKey('m-1')).toBeUndefined();
  });

  it('own messages from before a reload come back as own and sent', () => {
    s().beginConnection(false);
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice'], epoch: 'e1', offset: 1 });
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e1', recovered: false, messages: [chatAt('m-1', 1, 100, 'alice')] });
    expect(byKey('m-1')).toMatchObject({ own: true, status: 'sent' });
  });

  it('live frames with an offset already seen are dropped', () => {
    s().beginConnection(false);
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice'], epoch: 'e1', offset: 5 });
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e1', recovered: false, messages: [] });
    s().receive(chatAt('m-5', 5, 0));
    s().receive(chatAt('m-6', 6, 0));
    expect(s().messages.map((m) => m.key)).toEqual(['m-6']);
    expect(s().recovery).toEqual({ epoch: 'e1', seen: 6 });
  });

  it('after a reload, asks from where the previous page asked until history arrives', () => {
    s().restoreRecovery({ state: { epoch: 'e1', seen: 9 }, since: 6 });
    expect(s().recoveryPoint()).toEqual({ epoch: 'e1', offset: 6 });
    s().beginConnection(true);
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice'], epoch: 'e1', offset: 10 });
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e1', recovered: true, messages: [chatAt('m-10', 10, 100)] });
    expect(s().missedNotice).toBeNull();
    vi.advanceTimersByTime(FADE_MS);
    expect(s().recoveryPoint()).toEqual({ epoch: 'e1', offset: 10 });
  });

  it('the missed notice shows once, goes away by itself or when dismissed', () => {
    s().restoreRecovery({ state: { epoch: 'e1', seen: 9 }, since: 9 });
    s().beginConnection(true);
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e2', recovered: false, messages: [] });
    expect(s().missedNotice).not.toBeNull();
    vi.advanceTimersByTime(MISSED_NOTICE_MS);
    expect(s().missedNotice).toBeNull();
    s().beginConnection(true);
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e3', recovered: false, messages: [] });
    s().dismissMissedNotice();
    expect(s().missedNotice).toBeNull();
  });

  it('own messages that faded do not come back from history as missed', () => {
    s().beginConnection(false);
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice'], epoch: 'e1', offset: 0 });
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e1', recovered: false, messages: [] });
    s().compose('c-1', 'mine', at);
    s().markSending('c-1');
    s().receive({ type: 'ack', client_msg_id: 'c-1', message_id: 'm-1', offset: 1, epoch: 'e1' });
    expect(s().recovery).toEqual({ epoch: 'e1', seen: 1 });
    // Someone else's message was published between two of ours: seen stays before it.
    s().compose('c-2', 'mine too', at);
    s().markSending('c-2');
    s().receive({ type: 'ack', client_msg_id: 'c-2', message_id: 'm-3', offset: 3, epoch: 'e1' });
    expect(s().recovery).toEqual({ epoch: 'e1', seen: 1, ahead: [3] });
    vi.advanceTimersByTime(FADE_MS);
    expect(s().messages).toEqual([]);
    s().beginConnection(true);
    s().receive({
      type: 'history',
      channel_id: 'room',
      epoch: 'e1',
      recovered: true,
      messages: [chatAt('m-2', 2, 3000), { ...chatAt('m-3', 3, 3000, 'alice') }],
    });
    expect(s().messages.map((m) => m.key)).toEqual(['m-2']);
    expect(s().recovery).toEqual({ epoch: 'e1', seen: 3 });
  });

  it('requeueInFlight puts messages on the wire back in the queue, keeping their ids', () => {
    s().compose('c-1', 'one', at);
    s().markSending('c-1');
    s().requeueInFlight();
    expect(byKey('c-1')?.status).toBe('queued');
    vi.advanceTimersByTime(ACK_TIMEOUT_MS * 2);
    expect(byKey('c-1')?.status).toBe('queued');
  });
});

describe('a large history', () => {
  it('is added in one update and keeps the newest MAX_MESSAGES', () => {
    const many = Array.from({ length: MAX_MESSAGES + 20 }, (_, i) => ({
      type: 'chat' as const,
      message_id: `h-${i}`,
      channel_id: 'room',
      user_id: 'bob',
      payload: `${i}`,
      position: at,
      offset: i + 1,
      epoch: 'e1',
    }));
    let updates = 0;
    const unsubscribe = store.subscribe(() => updates++);
    s().beginConnection(false);
    s().receive({ type: 'history', channel_id: 'room', epoch: 'e1', recovered: false, messages: many });
    unsubscribe();
    expect(updates).toBe(2); // the recovery point, then the messages
    expect(s().messages).toHaveLength(MAX_MESSAGES);
    expect(s().messages[0]?.key).toBe('h-20');
    expect(vi.getTimerCount()).toBe(MAX_MESSAGES);
  });
});

describe('cursors', () => {
  it('tracks others, ignores its own user, forgets users who leave or are gone after a sync', () => {
    s().receive({ type: 'cursor', channel_id: 'room', user_id: 'bob', position: { x: 1, y: 2 } });
    s().receive({ type: 'cursor', channel_id: 'room', user_id: 'carol', position: { x: 3, y: 4 } });
    s().receive({ type: 'cursor', channel_id: 'room', user_id: 'alice', position: { x: 5, y: 6 } });
    s().receive({ type: 'cursor', channel_id: 'elsewhere', user_id: 'dave', position: { x: 5, y: 6 } });
    expect(Object.keys(s().cursors).sort()).toEqual(['bob', 'carol']);
    expect(s().cursors.bob).toEqual({ position: { x: 1, y: 2 }, at: Date.now() });
    s().receive({ type: 'user_left', channel_id: 'room', user_id: 'bob' });
    expect(Object.keys(s().cursors)).toEqual(['carol']);
    s().receive({ type: 'user_sync', channel_id: 'room', users: ['alice'] });
    expect(s().cursors).toEqual({});
  });
});
