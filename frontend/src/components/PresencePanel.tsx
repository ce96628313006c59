import { useState } from 'react';
import { whereIs } from '../lib/follow';
import { userColour } from '../lib/identity';
import { useChat, useChatStore, useViewStore } from '../state/context';
import { usePrefersReducedMotion } from './hooks';

function wideScreen(): boolean {
  return typeof window.matchMedia === 'function' && window.matchMedia('(min-width: 700px)').matches;
}

/** Who is online in the channel, straight from the server's presence events. */
export function PresencePanel() {
  const users = useChat((s) => s.users);
  const self = useChat((s) => s.userId);
  // While offline the list is only what was true when the connection dropped.
  const live = useChat((s) => s.connection.status === 'connected');
  const [open, setOpen] = useState(wideScreen);
  const store = useChatStore();
  const view = useViewStore();
  const reduced = usePrefersReducedMotion();

  // Follow: pan to where that user is or last wrote; for oneself, to one's latest message.
  const goToUser = (user: string) => {
    const s = store.getState();
    // Runs on click only; the compiler takes the click handler inside `users.map` for render
    // (https://github.com/facebook/react/issues/34046).
    // eslint-disable-next-line react-hooks/purity
    const target = whereIs(user, s.messages, s.cursors, Date.now());
    if (target !== null) view.getState().goTo(target, !reduced);
    else if (user === self) view.getState().recentre();
  };

  return (
    <aside className={`presence${live ? '' : ' presence--stale'}`} aria-label="People online">
      <details open={open} onToggle={(e) => setOpen(e.currentTarget.open)}>
        <summary className="presence__summary">
          <span aria-live="polite" data-testid="online-count">
            {live ? `${users.length} online` : 'Offline'}
          </span>
          {!live && users.length > 0 && <span className="presence__stale"> · last seen</span>}
        </summary>
        <ul className="presence__list" data-testid="online-list">
          {users.map((u) => (
            <li key={u} className="presence__user" data-user={u}>
              <button
                type="button"
                className="presence__go"
                onClick={() => goToUser(u)}
                aria-label={u === self ? `${u} (you): find me` : `${u}: go to their pointer or latest message`}
              >
                <span className="presence__dot" style={{ background: userColour(u) }} aria-hidden="true" />
                <span className="presence__name">{u}</span>
                {u === self && <span className="presence__you"> (you)</span>}
              </button>
            </li>
          ))}
        </ul>
      </details>
    </aside>
  );
}
