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
  const [open, setOpen] = useState(wideScreen);

  return (
    <aside className="presence" aria-label="People online">
      <details open={open} onToggle={(e) => setOpen(e.currentTarget.open)}>
        <summary className="presence__summary">
          <span aria-live="polite" data-testid="online-count">
            {users.length} online
          </span>
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
