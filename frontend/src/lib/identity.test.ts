import { describe, expect, it } from 'vitest';
import {
  channelFromSearch,
  DEFAULT_CHANNEL,
  invalidChars,
  loadName,
  NAME_STORAGE_KEY,
  saveName,
  shareLink,
  startingName,
  userColour,
  validateName,
} from './identity';

describe('validateName', () => {
  it('accepts the gateway charset from 1 to 64 characters', () => {
    expect(validateName('a')).toBeNull();
    expect(validateName('Alice_1.2-x')).toBeNull();
    expect(validateName('x'.repeat(64))).toBeNull();
  });

  it('names the problem', () => {
    expect(validateName('')).toBe('empty');
    expect(validateName('x'.repeat(65))).toBe('too_long');
    expect(validateName('al ice')).toBe('bad_chars');
    expect(validateName('zoë')).toBe('bad_chars');
    expect(validateName('<script>')).toBe('bad_chars');
    expect(invalidChars('a b/c b')).toEqual([' ', '/']);
  });
});

describe('channelFromSearch', () => {
  it('uses ?channel= when valid and the default otherwise', () => {
    expect(channelFromSearch('?channel=team-1')).toEqual({ channel: 'team-1', rejected: null });
    expect(channelFromSearch('')).toEqual({ channel: DEFAULT_CHANNEL, rejected: null });
    expect(channelFromSearch('?channel=')).toEqual({ channel: DEFAULT_CHANNEL, rejected: null });
    expect(channelFromSearch('?channel=a%20b')).toEqual({ channel: DEFAULT_CHANNEL, rejected: 'a b' });
  });

  it('builds a shareable link for the channel', () => {
    expect(shareLink({ origin: 'http://127.0.0.1:8080', pathname: '/' }, 'team-1')).toBe(
      'http://127.0.0.1:8080/?channel=team-1',
    );
  });
});

describe('userColour', () => {
  it('is stable per user and differs between users', () => {
    expect(userColour('alice')).toBe(userColour('alice'));
    expect(userColour('alice')).not.toBe(userColour('bob'));
    expect(userColour('alice')).toMatch(/^oklch\(\d+% 0\.\d\d \d+\)$/);
  });
});

describe('remembered name', () => {
  it('round-trips through storage and ignores invalid or unavailable storage', () => {
    const data = new Map<string, string>();
    const storage = {
      getItem: (k: string) => data.get(k) ?? null,
      setItem: (k: string, v: string) => void data.set(k, v),
    };
    expect(loadName(storage)).toBeNull();
    saveName(storage, 'alice');
    expect(loadName(storage)).toBe('alice');
    data.set(NAME_STORAGE_KEY, 'not valid');
    expect(loadName(storage)).toBeNull();
    const throwing = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('denied');
      },
    };
    expect(loadName(throwing)).toBeNull();
    expect(() => saveName(throwing, 'alice')).not.toThrow();
    expect(loadName(null)).toBeNull();
  });
});

describe('startingName', () => {
  const storageWith = (name?: string) => ({
    getItem: (k: string) => (k === NAME_STORAGE_KEY && name !== undefined ? name : null),
  });

  it('a reloaded tab rejoins with its own name', () => {
    expect(startingName(storageWith('bob'), storageWith('alice'))).toEqual({ joined: 'bob', suggestion: 'bob' });
  });

  it('a new tab offers the remembered name', () => {
    expect(startingName(storageWith(), storageWith('alice'))).toEqual({ joined: null, suggestion: 'alice' });
  });

  it('a first visit starts empty', () => {
    expect(startingName(storageWith(), storageWith())).toEqual({ joined: null, suggestion: '' });
    expect(startingName(null, null)).toEqual({ joined: null, suggestion: '' });
  });
});
