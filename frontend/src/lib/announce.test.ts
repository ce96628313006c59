import { describe, expect, it } from 'vitest';
import { announcement } from './announce';

const m = (userId: string, text: string) => ({ userId, text });

describe('announcement', () => {
  it('reads each message with its sender', () => {
    expect(announcement([m('bob', 'hi')])).toBe('bob says: hi');
    expect(announcement([m('bob', 'hi'), m('carol', 'yo')])).toBe('bob says: hi. carol says: yo');
  });

  it('summarises a burst and reads the latest few', () => {
    const burst = ['a', 'b', 'c', 'd', 'e'].map((t) => m('bob', t));
    expect(announcement(burst)).toBe('5 new messages. Latest: bob says: c. bob says: d. bob says: e');
  });
});
