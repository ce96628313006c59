import { useCallback, useEffect, useRef } from 'react';
import { approach, CURSOR_IDLE_MS, isIdle } from '../lib/cursors';
import { userColour } from '../lib/identity';
import type { Position } from '../lib/protocol';
import { canvasToScreen } from '../lib/viewport';
import { useChat, useViewStore } from '../state/context';
import type { RemoteCursor } from '../state/store';
import { useNow, usePrefersReducedMotion } from './hooks';

/**
 * Others' pointers with their names, drawn over the canvas at screen size. Positions glide
 * in an animation frame loop that writes transforms directly (up to 20 updates a second
 * per user should not re-render React); under reduced motion they jump.
 */
export function RemoteCursors() {
  const cursors = useChat((s) => s.cursors);
  const view = useViewStore();
  const reduced = usePrefersReducedMotion();
  const users = Object.keys(cursors);
  const now = useNow(users.length > 0, 1000);
  const nodes = useRef(new Map<string, HTMLElement>());
  const drawn = useRef(new Map<string, Position>());
  const latest = useRef<Record<string, RemoteCursor>>(cursors);
  const frame = useRef<number | null>(null);
  const reducedRef = useRef(reduced);
  useEffect(() => {
    reducedRef.current = reduced;
  }, [reduced]);

  const place = useCallback(
    (el: HTMLElement, p: Position) => {
      const s = canvasToScreen(view.getState().viewport, p);
      el.style.transform = `translate(${s.x}px, ${s.y}px)`;
    },
    [view],
  );

  const kick = useCallback(() => {
    if (frame.current !== null) return;
    let last = performance.now();
    const step = (t: number) => {
      const dt = t - last;
      last = t;
      let moving = false;
      for (const [user, c] of Object.entries(latest.current)) {
        const from = drawn.current.get(user) ?? c.position;
        const next = reducedRef.current ? c.position : approach(from, c.position, dt);
        drawn.current.set(user, next);
        if (next !== c.position) moving = true;
        const el = nodes.current.get(user);
        if (el !== undefined) place(el, next);
      }
      frame.current = moving ? requestAnimationFrame(step) : null;
    };
    frame.current = requestAnimationFrame(step);
  }, [place]);

  useEffect(() => {
    latest.current = cursors;
    for (const user of drawn.current.keys()) if (!(user in cursors)) drawn.current.delete(user);
    kick();
  }, [cursors, kick]);

  // Panning and zooming move the cursors with the canvas at once.
  useEffect(() => view.subscribe(kick), [view, kick]);

  useEffect(
    () => () => {
      if (frame.current !== null) cancelAnimationFrame(frame.current);
      frame.current = null;
    },
    [],
  );

  return (
    <div className="cursors" aria-hidden="true">
      {users.map((user) => {
        const c = cursors[user];
        if (c === undefined) return null;
        const idle = isIdle(c.at, now, CURSOR_IDLE_MS);
        return (
          <div
            key={user}
            ref={(el) => {
              if (el === null) {
                nodes.current.delete(user);
                return;
              }
              if (!nodes.current.has(user)) {
                const start = drawn.current.get(user) ?? c.position;
                drawn.current.set(user, start);
                place(el, start);
              }
              nodes.current.set(user, el);
            }}
            className={`cursor${idle ? ' cursor--idle' : ''}`}
            style={{ ['--user-colour' as string]: userColour(user) }}
            data-testid="cursor"
            data-user={user}
            data-x={c.position.x}
            data-y={c.position.y}
            data-idle={idle ? '' : undefined}
          >
            <svg className="cursor__arrow" width="18" height="20" viewBox="0 0 18 20" aria-hidden="true">
              <path d="M1 1 L1 16 L5.5 12 L9 19 L12 17.5 L8.6 10.8 L14.5 10.5 Z" />
            </svg>
            <span className="cursor__name">{user}</span>
          </div>
        );
      })}
    </div>
  );
}
