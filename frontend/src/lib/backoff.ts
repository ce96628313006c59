// Reconnect delays: 1 s doubling to 30 s, with jitter so that a gateway restart does not
// make every client reconnect in the same instant.

export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_MAX_MS = 30_000;
/** Each delay is drawn from [(1 - JITTER) * d, d], so the cap is never exceeded. */
export const BACKOFF_JITTER = 0.2;

/** Delay before reconnect attempt number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt, 0), 30);
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** exponent);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling * (1 - BACKOFF_JITTER * r));
}
