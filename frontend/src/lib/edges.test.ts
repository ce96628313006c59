import { describe, expect, it } from 'vitest';
import { centreOn, directionWords, edgeMarker, isOnScreen } from './edges';
import { canvasToScreen, INITIAL_VIEWPORT, zoomAt, type Viewport } from './viewport';

const phone = { width: 390, height: 700 };
const INSET = 24;

describe('isOnScreen', () => {
  it('follows pan and zoom', () => {
    expect(isOnScreen(INITIAL_VIEWPORT, phone, { x: 100, y: 100 })).toBe(true);
    expect(isOnScreen(INITIAL_VIEWPORT, phone, { x: 1000, y: 100 })).toBe(false);
    expect(isOnScreen({ scale: 1, offsetX: -800, offsetY: 0 }, phone, { x: 1000, y: 100 })).toBe(true);
    // Zoomed out to a quarter, the whole 1560 x 2800 area fits.
    expect(isOnScreen({ scale: 0.25, offsetX: 0, offsetY: 0 }, phone, { x: 1500, y: 2700 })).toBe(true);
    expect(isOnScreen(INITIAL_VIEWPORT, phone, { x: 385, y: 100 }, 10)).toBe(false);
  });
});

describe('edgeMarker', () => {
  it('is null for a point on screen or a view with no area', () => {
    expect(edgeMarker(INITIAL_VIEWPORT, phone, { x: 200, y: 300 }, INSET)).toBeNull();
    expect(edgeMarker(INITIAL_VIEWPORT, { width: 0, height: 700 }, { x: 2000, y: 300 }, INSET)).toBeNull();
  });

  it('sits on the right edge for a point straight to the right', () => {
    const m = edgeMarker(INITIAL_VIEWPORT, phone, { x: 2000, y: 350 }, INSET);
    expect(m).toEqual({ x: 390 - INSET, y: 350, angle: 0 });
  });

  it('sits on the top edge, pointing up, for a point above', () => {
    const m = edgeMarker(INITIAL_VIEWPORT, phone, { x: 195, y: -900 }, INSET);
    expect(m?.x).toBeCloseTo(195);
    expect(m?.y).toBeCloseTo(INSET);
    expect(m?.angle).toBeCloseTo(-Math.PI / 2);
  });

  it('crosses the nearer side on a diagonal, on the line from the centre to the point', () => {
    const target = { x: 1195, y: 1350 }; // 1000 right and 1000 down from the centre
    const m = edgeMarker(INITIAL_VIEWPORT, phone, target, INSET);
    expect(m).not.toBeNull();
    if (m === null) return;
    // The phone is narrow: the line leaves through the right side.
    expect(m.x).toBeCloseTo(390 - INSET);
    expect(m.y).toBeCloseTo(350 + (195 - INSET));
    expect(m.angle).toBeCloseTo(Math.PI / 4);
  });

  it('uses screen positions, so it follows zoom and pan', () => {
    const target = { x: 1000, y: 350 };
    const zoomedOut: Viewport = zoomAt(INITIAL_VIEWPORT, { x: 0, y: 350 }, 0.25);
    expect(edgeMarker(zoomedOut, phone, target, INSET)).toBeNull();
    const panned: Viewport = { scale: 2, offsetX: -3000, offsetY: 0 };
    const m = edgeMarker(panned, phone, target, INSET);
    expect(m?.x).toBeCloseTo(INSET);
    // On screen at (2 * 1000 - 3000, 2 * 350) = (-1000, 700): left of and below the centre.
    expect(m?.angle).toBeCloseTo(Math.atan2(700 - 350, -1000 - 195));
  });

  it('keeps more room where the insets say so (controls along the bottom)', () => {
    const insets = { top: 24, right: 24, bottom: 80, left: 24 };
    const below = edgeMarker(INITIAL_VIEWPORT, phone, { x: 195, y: 5000 }, insets);
    expect(below?.x).toBeCloseTo(195);
    expect(below?.y).toBeCloseTo(700 - 80);
    const above = edgeMarker(INITIAL_VIEWPORT, phone, { x: 195, y: -5000 }, insets);
    expect(above?.y).toBeCloseTo(24);
    const corner = edgeMarker(INITIAL_VIEWPORT, phone, { x: 5000, y: 5000 }, insets);
    expect(corner).not.toBeNull();
    if (corner === null) return;
    expect(corner.x).toBeLessThanOrEqual(390 - 24 + 1e-9);
    expect(corner.y).toBeLessThanOrEqual(700 - 80 + 1e-9);
    // Still on the line from the centre to the point.
    expect((corner.y - 350) / (corner.x - 195)).toBeCloseTo((5000 - 350) / (5000 - 195));
  });

  it('always lands inside the view, whatever the direction', () => {
    for (let a = 0; a < 360; a += 7) {
      const r = (a * Math.PI) / 180;
      const m = edgeMarker(INITIAL_VIEWPORT, phone, { x: 195 + 5000 * Math.cos(r), y: 350 + 5000 * Math.sin(r) }, INSET);
      expect(m).not.toBeNull();
      if (m === null) continue;
      expect(m.x).toBeGreaterThanOrEqual(INSET - 1e-9);
      expect(m.x).toBeLessThanOrEqual(390 - INSET + 1e-9);
      expect(m.y).toBeGreaterThanOrEqual(INSET - 1e-9);
      expect(m.y).toBeLessThanOrEqual(700 - INSET + 1e-9);
      const onBorder = [m.x - INSET, 390 - INSET - m.x, m.y - INSET, 700 - INSET - m.y].some((d) => Math.abs(d) < 1e-6);
      expect(onBorder).toBe(true);
    }
  });
});

describe('centreOn', () => {
  it('brings the point to the middle of the view at the same zoom', () => {
    const v = centreOn({ scale: 2, offsetX: 10, offsetY: 20 }, phone, { x: 1000, y: -40 });
    expect(v.scale).toBe(2);
    expect(canvasToScreen(v, { x: 1000, y: -40 })).toEqual({ x: 195, y: 350 });
  });
});

describe('directionWords', () => {
  it('names the eight directions of the screen', () => {
    expect(directionWords(0)).toBe('right');
    expect(directionWords(Math.PI / 2)).toBe('below');
    expect(directionWords(-Math.PI / 2)).toBe('above');
    expect(directionWords(Math.PI)).toBe('left');
    expect(directionWords(-Math.PI / 4)).toBe('above right');
  });
});
