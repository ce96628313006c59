import { useState } from 'react';
import { userColour } from '../lib/identity';
import { useChat } from '../state/context';

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
              <span className="presence__dot" style={{ background: userColour(u) }} aria-hidden="true" />
              <span className="presence__name">{u}</span>
              {u === self && <span className="presence__you"> (you)</span>}
            </li>
          ))}
        </ul>
      </details>
    </aside>
  );
}
