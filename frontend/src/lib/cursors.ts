// Drawing others' cursors: a cursor glides towards each new position instead of jumping
// 20 times a second, and one that has not moved for a while is hidden.

import type { Position } from './protocol';

/** A cursor not updated for this long is hidden (it stays known for "follow"). */
export const CURSOR_IDLE_MS = 4000;
/** Time constant of the glide: about 95 % of the way after three of these. */
export const CURSOR_GLIDE_MS = 50;
/** Closer than this (canvas px) counts as arrived, so the animation can stop. */
const ARRIVED = 0.05;

export function isIdle(at: number, now: number, idleMs = CURSOR_IDLE_MS): boolean {
  return now - at >= idleMs;
}

/**
 * One animation step from `from` towards `to` after `dtMs`: exponential smoothing, which
 * does not depend on the frame rate and never overshoots. Returns `to` once close enough.
 */
export function approach(from: Position, to: Position, dtMs: number, glideMs = CURSOR_GLIDE_MS): Position {
  if (dtMs <= 0) return from;
  const k = glideMs <= 0 ? 1 : 1 - Math.exp(-dtMs / glideMs);
  const x = from.x + (to.x - from.x) * k;
  const y = from.y + (to.y - from.y) * k;
  if (Math.hypot(to.x - x, to.y - y) < ARRIVED) return to;
  return { x, y };
}
