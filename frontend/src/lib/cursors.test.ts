import { describe, expect, it } from 'vitest';
import { approach, CURSOR_GLIDE_MS, CURSOR_IDLE_MS, isIdle } from './cursors';

describe('approach', () => {
  const from = { x: 0, y: 0 };
  const to = { x: 100, y: -50 };

  it('moves part of the way, along the straight line, never past the target', () => {
    const p = approach(from, to, CURSOR_GLIDE_MS);
    expect(p.x).toBeCloseTo(100 * (1 - Math.exp(-1)));
    expect(p.y).toBeCloseTo(-50 * (1 - Math.exp(-1)));
    expect(approach(from, to, 10_000)).toEqual(to);
  });

  it('does not depend on the frame rate', () => {
    let fast = from;
    for (let i = 0; i < 12; i++) fast = approach(fast, to, 1000 / 120);
    let slow = from;
    for (let i = 0; i < 3; i++) slow = approach(slow, to, 1000 / 30);
    expect(fast.x).toBeCloseTo(slow.x, 6);
    expect(fast.y).toBeCloseTo(slow.y, 6);
  });

  it('arrives exactly, so the animation can stop', () => {
    let p = from;
    let frames = 0;
    while ((p.x !== to.x || p.y !== to.y) && frames < 1000) {
      p = approach(p, to, 16);
      frames++;
    }
    expect(p).toEqual(to);
    expect(frames).toBeLessThan(40);
  });

  it('with no glide (reduced motion) jumps; with no time passed stays', () => {
    expect(approach(from, to, 16, 0)).toEqual(to);
    expect(approach(from, to, 0)).toEqual(from);
  });
});

describe('isIdle', () => {
  it('after CURSOR_IDLE_MS without an update', () => {
    expect(isIdle(1000, 1000 + CURSOR_IDLE_MS - 1)).toBe(false);
    expect(isIdle(1000, 1000 + CURSOR_IDLE_MS)).toBe(true);
  });
});
