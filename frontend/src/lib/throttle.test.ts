import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Throttle } from './throttle';

let sent: number[];
let t: Throttle<number>;

beforeEach(() => {
  vi.useFakeTimers();
  sent = [];
  t = new Throttle(50, (v) => sent.push(v));
});

afterEach(() => {
  vi.useRealTimers();
});

describe('Throttle', () => {
  it('sends the first value at once', () => {
    t.push(1);
    expect(sent).toEqual([1]);
  });

  it('sends at most once per interval, and the latest value of a burst last', () => {
    for (let i = 1; i <= 10; i++) {
      t.push(i);
      vi.advanceTimersByTime(10);
    }
    // 100 ms of moves every 10 ms: the first at 0, then one per 50 ms with the newest value.
    vi.advanceTimersByTime(100);
    expect(sent).toEqual([1, 5, 10]);
  });

  it('never sends faster than the interval over a long burst', () => {
    const times: number[] = [];
    const timed = new Throttle<number>(50, () => times.push(Date.now()));
    for (let i = 0; i < 200; i++) {
      timed.push(i);
      vi.advanceTimersByTime(3);
    }
    vi.advanceTimersByTime(100);
    for (let i = 1; i < times.length; i++) expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBeGreaterThanOrEqual(50);
    expect(times.length).toBeGreaterThanOrEqual(11);
    expect(times.length).toBeLessThanOrEqual(14);
  });

  it('after a quiet interval the next value goes out at once again', () => {
    t.push(1);
    vi.advanceTimersByTime(60);
    t.push(2);
    expect(sent).toEqual([1, 2]);
  });

  it('cancel drops the pending value', () => {
    t.push(1);
    t.push(2);
    t.cancel();
    vi.advanceTimersByTime(100);
    expect(sent).toEqual([1]);
  });
});
