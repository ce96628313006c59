import { describe, expect, it } from 'vitest';
import { chatUrl, checkPayload, encodeChat, encodeCursor, MAX_FRAME_BYTES, parseServerFrame, utf8Length } from './protocol';

describe('parseServerFrame', () => {
  it('parses every server frame of the protocol', () => {
    expect(parseServerFrame('{"type":"user_sync","channel_id":"default","users":["alice","bob"],"timestamp":"t"}')).toEqual({
      type: 'user_sync',
      channel_id: 'default',
      users: ['alice', 'bob'],
      timestamp: 't',
    });
    expect(parseServerFrame('{"type":"user_joined","channel_id":"c","user_id":"bob"}')).toEqual({
      type: 'user_joined',
      channel_id: 'c',
      user_id: 'bob',
    });
    expect(parseServerFrame('{"type":"user_left","channel_id":"c","user_id":"bob","timestamp":"t"}')).toMatchObject({
      type: 'user_left',
      user_id: 'bob',
    });
    expect(
      parseServerFrame(
        '{"type":"chat","message_id":"m1","channel_id":"c","user_id":"alice","payload":"Hello","position":{"x":120.5,"y":-40},"timestamp":"t"}',
      ),
    ).toEqual({
      type: 'chat',
      message_id: 'm1',
      channel_id: 'c',
      user_id: 'alice',
      payload: 'Hello',
      position: { x: 120.5, y: -40 },
      timestamp: 't',
    });
    expect(parseServerFrame('{"type":"ack","client_msg_id":"c-1","message_id":"m1","timestamp":"t"}')).toEqual({
      type: 'ack',
      client_msg_id: 'c-1',
      message_id: 'm1',
      timestamp: 't',
    });
  });

  it('reads offset and epoch where a gateway with history sends them, and ignores bad ones', () => {
    expect(parseServerFrame('{"type":"user_sync","channel_id":"c","users":[],"epoch":"e1","offset":0}')).toEqual({
      type: 'user_sync',
      channel_id: 'c',
      users: [],
      epoch: 'e1',
      offset: 0,
    });
    const chat = '{"type":"chat","message_id":"m","channel_id":"c","user_id":"u","payload":"p","position":{"x":1,"y":2}';
    expect(parseServerFrame(`${chat},"offset":41,"epoch":"e1"}`)).toMatchObject({ offset: 41, epoch: 'e1' });
    const odd = parseServerFrame(`${chat},"offset":-1,"epoch":7}`);
    expect(odd).not.toBeNull();
    expect(odd).not.toHaveProperty('offset');
    expect(odd).not.toHaveProperty('epoch');
    expect(parseServerFrame(`${chat},"offset":1.5}`)).not.toHaveProperty('offset');
    expect(parseServerFrame('{"type":"ack","client_msg_id":"c-1","message_id":"m","offset":3,"epoch":"e1"}')).toEqual({
      type: 'ack',
      client_msg_id: 'c-1',
      message_id: 'm',
      offset: 3,
      epoch: 'e1',
    });
  });

  it('parses a history frame, leaving out a bad entry and then not claiming full recovery', () => {
    const m = (id: string, offset: number) => ({
      type: 'chat',
      message_id: id,
      channel_id: 'c',
      user_id: 'u',
      payload: 'p',
      position: { x: 0, y: 0 },
      offset,
      epoch: 'e1',
    });
    const frame = (messages: unknown[], recovered = true) =>
      JSON.stringify({ type: 'history', channel_id: 'c', epoch: 'e1', recovered, messages });
    expect(parseServerFrame(frame([m('a', 1), m('b', 2)]))).toEqual({
      type: 'history',
      channel_id: 'c',
      epoch: 'e1',
      recovered: true,
      messages: [m('a', 1), m('b', 2)],
    });
    expect(parseServerFrame(frame([m('a', 1), { type: 'chat' }, 5]))).toMatchObject({
      recovered: false,
      messages: [m('a', 1)],
    });
    expect(parseServerFrame(frame([], false))).toMatchObject({ recovered: false, messages: [] });
    expect(parseServerFrame('{"type":"history","channel_id":"c","epoch":"e1","recovered":"yes","messages":[]}')).toBeNull();
    expect(parseServerFrame('{"type":"history","channel_id":"c","recovered":true,"messages":[]}')).toBeNull();
  });

  it('parses a cursor frame', () => {
    expect(parseServerFrame('{"type":"cursor","channel_id":"c","user_id":"bob","position":{"x":3,"y":-4}}')).toEqual({
      type: 'cursor',
      channel_id: 'c',
      user_id: 'bob',
      position: { x: 3, y: -4 },
    });
    expect(parseServerFrame('{"type":"cursor","channel_id":"c","user_id":"bob","position":{"x":null,"y":1}}')).toBeNull();
  });

  it('keeps the client_msg_id of an error only when the server sent one', () => {
    expect(parseServerFrame('{"type":"error","code":"rate_limited","message":"slow down","client_msg_id":"c-9"}')).toEqual({
      type: 'error',
      code: 'rate_limited',
      message: 'slow down',
      client_msg_id: 'c-9',
    });
    expect(parseServerFrame('{"type":"error","code":"invalid_message","message":"bad"}')).toEqual({
      type: 'error',
      code: 'invalid_message',
      message: 'bad',
    });
    expect(parseServerFrame('{"type":"error"}')).toEqual({ type: 'error', code: 'unknown', message: 'unknown' });
  });

  it.each([
    ['not json', 'hello'],
    ['an array', '[1,2]'],
    ['an unknown type', '{"type":"typing"}'],
    ['users that are not strings', '{"type":"user_sync","channel_id":"c","users":[1]}'],
    ['a chat without position', '{"type":"chat","message_id":"m","channel_id":"c","user_id":"u","payload":"p"}'],
    [
      'a chat with a string coordinate',
      '{"type":"chat","message_id":"m","channel_id":"c","user_id":"u","payload":"p","position":{"x":"1","y":2}}',
    ],
    ['an ack without message_id', '{"type":"ack","client_msg_id":"c"}'],
  ])('returns null for %s', (_, text) => {
    expect(parseServerFrame(text)).toBeNull();
  });
});

describe('client frames', () => {
  it('encodes a chat with its client_msg_id', () => {
    expect(JSON.parse(encodeChat('Hi <b>', { x: 1.5, y: -2 }, 'c-1'))).toEqual({
      type: 'chat',
      payload: 'Hi <b>',
      position: { x: 1.5, y: -2 },
      client_msg_id: 'c-1',
    });
  });

  it('encodes a cursor', () => {
    expect(JSON.parse(encodeCursor({ x: 3, y: -4.5 }))).toEqual({ type: 'cursor', position: { x: 3, y: -4.5 } });
  });

  it('refuses empty text and frames over the gateway limit, counting UTF-8 bytes', () => {
    const at = { x: 0, y: 0 };
    expect(checkPayload('   ', at, 'c-1')).toBe('empty');
    expect(checkPayload('hello', at, 'c-1')).toBeNull();
    expect(utf8Length('é')).toBe(2);
    const overhead = utf8Length(encodeChat('', at, 'c-1'));
    const fits = 'é'.repeat(Math.floor((MAX_FRAME_BYTES - overhead) / 2));
    expect(checkPayload(fits, at, 'c-1')).toBeNull();
    expect(checkPayload(`${fits}éé`, at, 'c-1')).toBe('too_large');
  });

  it('builds the WebSocket URL on the page origin with a matching scheme', () => {
    expect(chatUrl({ protocol: 'http:', host: 'localhost:8080' }, 'al ice', 'room')).toBe(
      'ws://localhost:8080/api/chat?uid=al+ice&channel=room',
    );
    expect(chatUrl({ protocol: 'https:', host: 'chat.example.com' }, 'bob', 'default')).toBe(
      'wss://chat.example.com/api/chat?uid=bob&channel=default',
    );
    expect(chatUrl({ protocol: 'http:', host: 'h' }, 'bob', 'room', { epoch: 'e 1', offset: 42 })).toBe(
      'ws://h/api/chat?uid=bob&channel=room&since=42&epoch=e+1',
    );
  });
});
