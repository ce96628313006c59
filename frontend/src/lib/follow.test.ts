import { describe, expect, it } from 'vitest';
import { CURSOR_IDLE_MS } from './cursors';
import { whereIs } from './follow';

const now = 100_000;
const messages = [
  { userId: 'bob', position: { x: 1, y: 1 } },
  { userId: 'carol', position: { x: 2, y: 2 } },
  { userId: 'bob', position: { x: 3, y: 3 } },
];

describe('whereIs', () => {
  it('prefers a moving cursor, then the latest message, then an idle cursor', () => {
    const moving = { bob: { position: { x: 9, y: 9 }, at: now - 100 } };
    expect(whereIs('bob', messages, moving, now)).toEqual({ x: 9, y: 9 });
    const idle = { bob: { position: { x: 9, y: 9 }, at: now - CURSOR_IDLE_MS } };
    expect(whereIs('bob', messages, idle, now)).toEqual({ x: 3, y: 3 });
    expect(whereIs('bob', [], idle, now)).toEqual({ x: 9, y: 9 });
    expect(whereIs('dave', messages, idle, now)).toBeNull();
  });
});
