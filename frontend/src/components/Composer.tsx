import { useId, useLayoutEffect, useRef } from 'react';
import type { Position } from '../lib/protocol';

export interface ComposerState {
  /** Where the message goes, in canvas coordinates. */
  position: Position;
  draft: string;
  problem: string | null;
}

interface Props {
  state: ComposerState;
  /** Where to draw it, in screen coordinates relative to the canvas. */
  screen: Position;
  colour: string;
  onChange: (draft: string) => void;
  onSubmit: () => void;
  onCancel: () => void;
}

/** The text field that appears where the user clicked. Enter sends, Escape cancels. */
export function Composer({ state, screen, colour, onChange, onSubmit, onCancel }: Props) {
  const inputRef = useRef<HTMLInputElement>(null);
  const errorId = useId();
  const { x, y } = state.position;

  // Focus during the commit of the tap itself: phones only raise the keyboard for focus
  // that happens inside the user's gesture.
  useLayoutEffect(() => {
    inputRef.current?.focus({ preventScroll: true });
  }, [x, y]);

  return (
    <div
      className="composer"
      style={{ left: screen.x, top: screen.y, ['--user-colour' as string]: colour }}
      data-interactive=""
    >
      <input
        ref={inputRef}
        className="composer__input"
        data-testid="composer"
        aria-label={`Message at ${Math.round(x)}, ${Math.round(y)}. Enter to send, Escape to cancel.`}
        aria-invalid={state.problem !== null}
        aria-describedby={state.problem !== null ? errorId : undefined}
        autoComplete="off"
        enterKeyHint="send"
        value={state.draft}
        onChange={(e) => onChange(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.nativeEvent.isComposing) {
            e.preventDefault();
            onSubmit();
          } else if (e.key === 'Escape') {
            e.preventDefault();
            onCancel();
          }
        }}
        onBlur={() => {
          if (state.draft.trim() === '') onCancel();
        }}
      />
      {state.problem !== null && (
        <p id={errorId} className="composer__error" role="alert">
          {state.problem}
        </p>
      )}
    </div>
  );
}
