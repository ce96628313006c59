import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { describeNameProblem, invalidChars, NAME_MAX, validateName } from '../lib/identity';

interface Props {
  initial: string;
  channel: string;
  onSubmit: (name: string) => void;
  onCancel?: () => void;
}

/** Asks for the user id, validating as the user types. */
export function NameForm({ initial, channel, onSubmit, onCancel }: Props) {
  const [name, setName] = useState(initial);
  const [touched, setTouched] = useState(initial !== '');
  const inputRef = useRef<HTMLInputElement>(null);
  const inputId = useId();
  const hintId = useId();
  const errorId = useId();
  const problem = validateName(name);
  const bad = invalidChars(name);
  const showError = touched && problem !== null;

  // A remembered name is selected, so Enter keeps it and typing replaces it.
  useEffect(() => {
    inputRef.current?.select();
  }, []);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setTouched(true);
    if (problem === null) onSubmit(name);
  };

  return (
    <main className="gate">
      <form className="gate__card" onSubmit={submit} noValidate aria-labelledby={`${inputId}-title`}>
        <h1 id={`${inputId}-title`} className="gate__title">
          CanvasChat
        </h1>
        <p className="gate__lead">
          Click anywhere on a shared canvas and type: everyone in <strong>#{channel}</strong> sees it there for a
          few seconds.
        </p>
        <label htmlFor={inputId} className="gate__label">
          Your name
        </label>
        <input
          ref={inputRef}
          id={inputId}
          className="gate__input"
          name="name"
          autoFocus
          autoComplete="nickname"
          autoCapitalize="off"
          spellCheck={false}
          maxLength={NAME_MAX * 2}
          value={name}
          aria-invalid={showError}
          aria-describedby={showError ? `${hintId} ${errorId}` : hintId}
          onChange={(e) => {
            setName(e.target.value);
            setTouched(true);
          }}
        />
        <p id={hintId} className="gate__hint">
          1–{NAME_MAX} letters, digits, “_”, “.” or “-”. Others see it next to what you write.
        </p>
        <p id={errorId} className="gate__error" role="alert">
          {showError && problem !== null
            ? problem === 'bad_chars'
              ? `Not allowed: ${bad.map((c) => (c === ' ' ? 'space' : `“${c}”`)).join(', ')}. ${describeNameProblem(problem, 'name')}`
              : describeNameProblem(problem, 'name')
            : ''}
        </p>
        <div className="gate__actions">
          {onCancel && (
            <button type="button" className="button button--quiet" onClick={onCancel}>
              Cancel
            </button>
          )}
          <button type="submit" className="button" disabled={problem !== null}>
            Join #{channel}
          </button>
        </div>
      </form>
    </main>
  );
}
