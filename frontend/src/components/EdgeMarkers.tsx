import { CURSOR_IDLE_MS, isIdle } from '../lib/cursors';
import { directionWords, edgeMarker, isOnScreen, type EdgePoint } from '../lib/edges';
import { userColour } from '../lib/identity';
import type { Position } from '../lib/protocol';
import { useChat, useView } from '../state/context';
import { useNow, usePrefersReducedMotion } from './hooks';

/**
 * Room between a marker's centre and the view's edges: half the marker plus a gap, and at
 * the bottom enough to stay clear of the online list and "Back to start".
 */
const INSETS = { top: 28, right: 28, bottom: 84, left: 28 };
/** A message whose anchor is this close to the edge barely shows: it counts as off screen. */
const VISIBLE_MARGIN = 12;

interface Marker extends EdgePoint {
  user: string;
  target: Position;
  /** Messages from this user off screen; 0 when the marker is for the cursor alone. */
  count: number;
}

/**
 * For each other user with a message or a moving cursor outside the view, a button at the
 * edge in their colour pointing to it; pressing it pans there. A count of the messages off
 * screen says that something happened where this user is not looking.
 */
export function EdgeMarkers() {
  const messages = useChat((s) => s.messages);
  const cursors = useChat((s) => s.cursors);
  const self = useChat((s) => s.userId);
  const viewport = useView((v) => v.viewport);
  const size = useView((v) => v.size);
  const goTo = useView((v) => v.goTo);
  const now = useNow(Object.keys(cursors).length > 0, 1000);
  const reduced = usePrefersReducedMotion();

  const byUser = new Map<string, Marker>();
  let offscreen = 0;
  for (const m of messages) {
    if (m.own || m.userId === self) continue;
    if (isOnScreen(viewport, size, m.position, VISIBLE_MARGIN)) continue;
    const edge = edgeMarker(viewport, size, m.position, INSETS);
    if (edge === null) continue;
    offscreen += 1;
    // Later messages replace earlier ones: the marker points at the newest.
    const count = (byUser.get(m.userId)?.count ?? 0) + 1;
    byUser.set(m.userId, { ...edge, user: m.userId, target: m.position, count });
  }
  for (const [user, c] of Object.entries(cursors)) {
    if (byUser.has(user) || isIdle(c.at, now, CURSOR_IDLE_MS)) continue;
    const edge = edgeMarker(viewport, size, c.position, INSETS);
    if (edge !== null) byUser.set(user, { ...edge, user, target: c.position, count: 0 });
  }
  const markers = [...byUser.values()].sort((a, b) => a.user.localeCompare(b.user));

  return (
    <>
      {markers.map((m) => {
        const what = m.count === 0 ? `${m.user}'s pointer` : `${m.count} message${m.count === 1 ? '' : 's'} from ${m.user}`;
        return (
          <button
            key={m.user}
            type="button"
            className="edge"
            style={{ left: m.x, top: m.y, ['--user-colour' as string]: userColour(m.user) }}
            data-interactive=""
            data-testid="edge-marker"
            data-user={m.user}
            data-count={m.count}
            aria-label={`${what}, ${directionWords(m.angle)} off screen. Go there.`}
            title={`${what}: go there`}
            onClick={() => goTo(m.target, !reduced)}
          >
            <span className="edge__pointer" style={{ transform: `rotate(${m.angle}rad)` }} aria-hidden="true" />
            <span className="edge__initial" aria-hidden="true">
              {m.user.slice(0, 1).toUpperCase()}
            </span>
            {m.count > 1 && (
              <span className="edge__count" aria-hidden="true">
                {m.count}
              </span>
            )}
          </button>
        );
      })}
      {offscreen > 0 && (
        <p className="offscreen" data-testid="offscreen-count">
          {offscreen} new message{offscreen === 1 ? '' : 's'} off screen
        </p>
      )}
    </>
  );
}
