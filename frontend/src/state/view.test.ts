// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { canvasToScreen, INITIAL_VIEWPORT } from '../lib/viewport';
import { createViewStore, GLIDE_MS, type ViewStore } from './view';

let view: ViewStore;
const at = () => canvasToScreen(view.getState().viewport, { x: 1000, y: 500 });

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'requestAnimationFrame', 'cancelAnimationFrame', 'performance', 'Date'] });
  view = createViewStore();
  view.getState().setSize({ width: 400, height: 300 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('view', () => {
  it('goTo jumps to centre the point', () => {
    view.getState().goTo({ x: 1000, y: 500 });
    expect(at()).toEqual({ x: 200, y: 150 });
  });

  it('goTo with glide moves there over GLIDE_MS, part of the way in between', () => {
    view.getState().goTo({ x: 1000, y: 500 }, true);
    expect(view.getState().viewport).toEqual(INITIAL_VIEWPORT);
    vi.advanceTimersByTime(GLIDE_MS / 2);
    const mid = at();
    expect(mid.x).toBeLessThan(1000);
    expect(mid.x).toBeGreaterThan(200);
    vi.advanceTimersByTime(GLIDE_MS);
    expect(at()).toEqual({ x: 200, y: 150 });
  });

  it('a drag during the glide takes over at once', () => {
    view.getState().goTo({ x: 1000, y: 500 }, true);
    vi.advanceTimersByTime(GLIDE_MS / 3);
    view.getState().setViewport(INITIAL_VIEWPORT);
    vi.advanceTimersByTime(GLIDE_MS * 2);
    expect(view.getState().viewport).toEqual(INITIAL_VIEWPORT);
  });

  it('setSize ignores a size that did not change', () => {
    const before = view.getState();
    view.getState().setSize({ width: 400, height: 300 });
    expect(view.getState()).toBe(before);
  });
});
