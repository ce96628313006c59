import { memo } from 'react';
import { userColour } from '../lib/identity';
import { FADE_MS, type CanvasMessage } from '../state/store';

interface Props {
  message: CanvasMessage;
  /**
   * The page shows itself connected: a queued message is only waiting for a handover
   * (close 4000/1001) to finish, so it reads as sending rather than waiting.
   */
  online?: boolean;
  onRetry: (key: string) => void;
  onDismiss: (key: string) => void;
}

const STATE_TEXT: Partial<Record<CanvasMessage['status'], string>> = {
  queued: 'waiting for connection…',
  sending: 'sending…',
};

/** One message at its canvas position. The text is a React text node, never HTML. */
export const MessageBubble = memo(function MessageBubble({ message, online = false, onRetry, onDismiss }: Props) {
  const { position, status } = message;
  const stateText = status === 'queued' && online ? STATE_TEXT.sending : STATE_TEXT[status];
  const fading = message.fadeStartedAt !== undefined;
  // Resuming the CSS animation from the elapsed time keeps it in step with the removal timer.
  const elapsed = fading ? Math.min(FADE_MS, Date.now() - (message.fadeStartedAt ?? 0)) : 0;
  return (
    <div
      className={`msg msg--${status}${fading ? ' msg--fading' : ''}${message.own ? ' msg--own' : ''}`}
      style={{
        left: position.x,
        top: position.y,
        ['--user-colour' as string]: userColour(message.userId),
        animationDelay: fading ? `${-elapsed}ms` : undefined,
        animationDuration: `${FADE_MS}ms`,
      }}
      data-testid="message"
      data-status={status}
      data-user={message.userId}
      data-x={position.x}
      data-y={position.y}
      data-interactive={status === 'failed' ? '' : undefined}
    >
      <span className="msg__author">
        {message.userId}
        {message.own ? ' (you)' : ''}
      </span>
      <span className="msg__text">{message.text}</span>
      {stateText !== undefined && <span className="msg__state">{stateText}</span>}
      {status === 'failed' && (
        <span className="msg__failure">
          <span className="msg__error" role="alert">
            Not sent: {message.error}
          </span>
          <span className="msg__actions">
            <button type="button" className="button button--small" onClick={() => onRetry(message.key)}>
              Retry
            </button>
            <button
              type="button"
              className="button button--small button--quiet"
              onClick={() => onDismiss(message.key)}
            >
              Dismiss
            </button>
          </span>
        </span>
      )}
    </div>
  );
});
