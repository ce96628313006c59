import { useChat, useClient } from '../state/context';
import { useNow } from './hooks';

/** Always-visible connection state, with a countdown while waiting to reconnect. */
export function ConnectionStatus() {
  const connection = useChat((s) => s.connection);
  const queued = useChat((s) => s.messages.filter((m) => m.own && m.status === 'queued').length);
  const client = useClient();
  const now = useNow(connection.status === 'reconnecting', 250);

  let text: string;
  switch (connection.status) {
    case 'idle':
      text = 'Offline';
      break;
    case 'connecting':
      text = connection.attempt === 0 ? 'Connecting…' : `Reconnecting (attempt ${connection.attempt + 1})…`;
      break;
    case 'connected':
      text = 'Connected';
      break;
    case 'reconnecting': {
      const seconds = Math.max(0, Math.ceil((connection.retryAt - now) / 1000));
      text = `Connection lost. Reconnecting in ${seconds} s`;
      break;
    }
    case 'failed':
      text = `Disconnected. ${connection.reason}`;
      break;
  }

  return (
    <div className={`conn conn--${connection.status}`} data-testid="connection" data-status={connection.status}>
      <span className="conn__dot" aria-hidden="true" />
      <span role="status" aria-live="polite" className="conn__text">
        {text}
        {queued > 0 && connection.status !== 'connected' ? ` · ${queued} waiting to send` : ''}
      </span>
      {(connection.status === 'reconnecting' || connection.status === 'failed') && (
        <button type="button" className="button button--small" onClick={() => client?.retryNow()}>
          {connection.status === 'failed' ? 'Retry' : 'Retry now'}
        </button>
      )}
    </div>
  );
}
