import { useEffect, useRef, useState } from 'react';
import { shareLink } from '../lib/identity';

/** The channel's link, copied with one click; selectable text where the clipboard is blocked. */
export function ShareLink({ channel }: { channel: string }) {
  const link = shareLink(window.location, channel);
  const [state, setState] = useState<'idle' | 'copied' | 'manual'>('idle');
  const inputRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (state === 'manual') inputRef.current?.select();
    if (state !== 'copied') return;
    const t = setTimeout(() => setState('idle'), 2000);
    return () => clearTimeout(t);
  }, [state]);

  const copy = async () => {
    try {
      if (navigator.clipboard === undefined) throw new Error('no clipboard');
      await navigator.clipboard.writeText(link);
      setState('copied');
    } catch {
      setState('manual');
    }
  };

  return (
    <div className="share">
      {state === 'manual' ? (
        <input
          ref={inputRef}
          className="share__input"
          readOnly
          value={link}
          aria-label="Link to this channel"
          onBlur={() => setState('idle')}
        />
      ) : (
        <button type="button" className="button button--small button--quiet" onClick={() => void copy()} data-link={link}>
          {state === 'copied' ? 'Link copied' : 'Copy link'}
        </button>
      )}
    </div>
  );
}
