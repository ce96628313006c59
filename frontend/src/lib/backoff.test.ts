import { describe, expect, it } from 'vitest';
import { BACKOFF_JITTER, BACKOFF_MAX_MS, backoffDelay } from './backoff';

describe('backoffDelay', () => {
  it('starts at 1 s and doubles up to 30 s', () => {
    const schedule = Array.from({ length: 9 }, (_, attempt) => backoffDelay(attempt, () => 0));
    expect(schedule).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  });

  it('jitters each delay down by at most 20% and never above the cap', () => {
    expect(backoffDelay(0, () => 1)).toBe(1000 * (1 - BACKOFF_JITTER));
    expect(backoffDelay(3, () => 0.5)).toBe(8000 * (1 - BACKOFF_JITTER / 2));
    for (let attempt = 0; attempt < 50; attempt++) {
      const d = backoffDelay(attempt);
      expect(d).toBeGreaterThanOrEqual(Math.min(BACKOFF_MAX_MS, 1000 * 2 ** attempt) * (1 - BACKOFF_JITTER));
      expect(d).toBeLessThanOrEqual(BACKOFF_MAX_MS);
    }
  });

  it('copes with odd inputs', () => {
    expect(backoffDelay(-3, () => 0)).toBe(1000);
    expect(backoffDelay(10_000, () => 0)).toBe(BACKOFF_MAX_MS);
    expect(backoffDelay(0, () => 7)).toBe(800);
  });
});
