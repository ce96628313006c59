import { describe, expect, it } from 'vitest';
import {
  applyPinch,
  blendViewport,
  easeOut,
  canvasToScreen,
  classifyWheel,
  MAX_SCALE,
  MIN_SCALE,
  pan,
  screenToCanvas,
  wheelZoomFactor,
  zoomAt,
  type Viewport,
} from './viewport';

const v: Viewport = { offsetX: 30, offsetY: -20, scale: 2 };

describe('coordinates', () => {
  it('maps screen to canvas and back', () => {
    const c = screenToCanvas(v, { x: 130, y: 80 });
    expect(c).toEqual({ x: 50, y: 50 });
    expect(canvasToScreen(v, c)).toEqual({ x: 130, y: 80 });
  });

  it('panning moves the screen position of a canvas point by the drag distance', () => {
    const p = { x: 10, y: 10 };
    const before = canvasToScreen(v, p);
    const after = canvasToScreen(pan(v, 15, -5), p);
    expect(after).toEqual({ x: before.x + 15, y: before.y - 5 });
  });

  it('zooming keeps the canvas point under the cursor in place, within limits', () => {
    const anchor = { x: 200, y: 150 };
    const under = screenToCanvas(v, anchor);
    const zoomed = zoomAt(v, anchor, 1.5);
    expect(zoomed.scale).toBe(3);
    const back = canvasToScreen(zoomed, under);
    expect(back.x).toBeCloseTo(anchor.x);
    expect(back.y).toBeCloseTo(anchor.y);
    expect(zoomAt(v, anchor, 100).scale).toBe(MAX_SCALE);
    expect(zoomAt(v, anchor, 0.001).scale).toBe(MIN_SCALE);
  });

  it('a pinch zooms by the finger spread about their midpoint', () => {
    const start = { offsetX: 0, offsetY: 0, scale: 1 };
    const next = applyPinch(
      start,
      { a: { x: 100, y: 100 }, b: { x: 200, y: 100 } },
      { a: { x: 50, y: 100 }, b: { x: 250, y: 100 } },
    );
    expect(next.scale).toBeCloseTo(2);
    const mid = canvasToScreen(next, { x: 150, y: 100 });
    expect(mid.x).toBeCloseTo(150);
    expect(mid.y).toBeCloseTo(100);
  });
});

describe('wheel', () => {
  const wheel = { deltaX: 0, deltaY: 0, deltaMode: 0, ctrlKey: false, metaKey: false };

  it('zooms on pinch gestures and mouse wheels, pans on two-finger scrolls', () => {
    expect(classifyWheel({ ...wheel, deltaY: 3.5, ctrlKey: true })).toBe('zoom');
    expect(classifyWheel({ ...wheel, deltaY: 3, deltaMode: 1 })).toBe('zoom');
    expect(classifyWheel({ ...wheel, deltaY: 100 })).toBe('zoom');
    expect(classifyWheel({ ...wheel, deltaY: 4.2 })).toBe('pan');
    expect(classifyWheel({ ...wheel, deltaX: 12, deltaY: 60 })).toBe('pan');
  });

  it('wheel down zooms out, wheel up zooms in', () => {
    expect(wheelZoomFactor({ ...wheel, deltaY: 100 })).toBeLessThan(1);
    expect(wheelZoomFactor({ ...wheel, deltaY: -100 })).toBeGreaterThan(1);
    expect(wheelZoomFactor({ ...wheel, deltaY: 1e6 })).toBe(wheelZoomFactor({ ...wheel, deltaY: 100 }));
  });
});

describe('blendViewport and easeOut', () => {
  it('goes from one view to the other, ending exactly there', () => {
    const a = { scale: 1, offsetX: 0, offsetY: 0 };
    const b = { scale: 2, offsetX: -100, offsetY: 50 };
    expect(blendViewport(a, b, 0)).toEqual(a);
    expect(blendViewport(a, b, 0.5)).toEqual({ scale: 1.5, offsetX: -50, offsetY: 25 });
    expect(blendViewport(a, b, 1)).toEqual(b);
    expect(blendViewport(a, b, 7)).toEqual(b);
    expect(easeOut(0)).toBe(0);
    expect(easeOut(1)).toBe(1);
    expect(easeOut(0.5)).toBeGreaterThan(0.5);
  });
});
