// "Follow": where a user is on the canvas, for clicking their name in the online list.

import type { Position } from './protocol';
import { isIdle } from './cursors';

interface Placed {
  userId: string;
  position: Position;
}

/**
 * A moving cursor first (where they are now), then their latest message on the canvas
 * (where they last wrote), then wherever their cursor last was; null when unknown.
 */
export function whereIs(
  userId: string,
  messages: readonly Placed[],
  cursors: Readonly<Record<string, { position: Position; at: number }>>,
  now: number,
): Position | null {
  const cursor = cursors[userId];
  if (cursor !== undefined && !isIdle(cursor.at, now)) return cursor.position;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m !== undefined && m.userId === userId) return m.position;
  }
  return cursor?.position ?? null;
}
