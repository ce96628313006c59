// Where things are relative to the visible part of the canvas: whether a point is on
// screen, the marker at the viewport's edge that points to one that is not, and the
// viewport that brings a point to the centre. Screen coordinates are relative to the
// canvas element; canvas coordinates are those of the protocol.

import type { Position } from './protocol';
import { canvasToScreen, type Viewport } from './viewport';

export interface Size {
  width: number;
  height: number;
}

export interface EdgePoint {
  /** Where the marker's centre goes (screen). */
  x: number;
  y: number;
  /** Direction from the view's centre to the target, radians (0 points right, y down). */
  angle: number;
}

/** Whether the canvas point shows inside the view, at least `margin` px from its edges. */
export function isOnScreen(v: Viewport, size: Size, target: Position, margin = 0): boolean {
  const p = canvasToScreen(v, target);
  return p.x >= margin && p.y >= margin && p.x <= size.width - margin && p.y <= size.height - margin;
}

/** Room kept free along each edge of the view (px). */
export interface Insets {
  top: number;
  right: number;
  bottom: number;
  left: number;
}

/**
 * The edge marker for a canvas point outside the view: on the border of the view shrunk
 * by `inset` (room for the marker itself, and for controls along an edge), where the line
 * from the centre to the point crosses it. Null when the point is on screen or the view has
 * no area.
 */
export function edgeMarker(v: Viewport, size: Size, target: Position, inset: number | Insets): EdgePoint | null {
  if (size.width <= 0 || size.height <= 0) return null;
  if (isOnScreen(v, size, target)) return null;
  const i = typeof inset === 'number' ? { top: inset, right: inset, bottom: inset, left: inset } : inset;
  const p = canvasToScreen(v, target);
  const cx = size.width / 2;
  const cy = size.height / 2;
  const dx = p.x - cx;
  const dy = p.y - cy;
  // How far the centre may move towards each side; never negative, even on a tiny view.
  const room = (edge: number) => Math.max(0, edge);
  const hx = dx > 0 ? room(size.width - i.right - cx) : room(cx - i.left);
  const hy = dy > 0 ? room(size.height - i.bottom - cy) : room(cy - i.top);
  // Scale the direction so it just reaches the inset border on its nearer side.
  const t = Math.min(dx === 0 ? Infinity : hx / Math.abs(dx), dy === 0 ? Infinity : hy / Math.abs(dy));
  return { x: cx + dx * t, y: cy + dy * t, angle: Math.atan2(dy, dx) };
}

/** The viewport, at the same zoom, with the canvas point at the centre of the view. */
export function centreOn(v: Viewport, size: Size, target: Position): Viewport {
  return {
    scale: v.scale,
    offsetX: size.width / 2 - target.x * v.scale,
    offsetY: size.height / 2 - target.y * v.scale,
  };
}

/** Compass words for a screen direction, for labels read aloud ("above right"). */
export function directionWords(angle: number): string {
  const deg = ((angle * 180) / Math.PI + 360) % 360;
  const names = ['right', 'below right', 'below', 'below left', 'left', 'above left', 'above', 'above right'];
  return names[Math.round(deg / 45) % 8] ?? 'off screen';
}
