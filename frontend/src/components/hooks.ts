import { useEffect, useState } from 'react';

/** Date.now(), refreshed every `everyMs` while `active`. */
export function useNow(active: boolean, everyMs: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    // The clock is the external system here: on (re)activation the time shown must be
    // current at once, not up to `everyMs` late.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    setNow(Date.now());
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [active, everyMs]);
  return now;
}

const REDUCED_MOTION = '(prefers-reduced-motion: reduce)';

/** Whether the user asked for less motion; follows changes of the setting. */
export function usePrefersReducedMotion(): boolean {
  const query = () => typeof window.matchMedia === 'function' && window.matchMedia(REDUCED_MOTION).matches;
  const [reduced, setReduced] = useState(query);
  useEffect(() => {
    if (typeof window.matchMedia !== 'function') return;
    const list = window.matchMedia(REDUCED_MOTION);
    const onChange = () => setReduced(list.matches);
    list.addEventListener('change', onChange);
    return () => list.removeEventListener('change', onChange);
  }, []);
  return reduced;
}
