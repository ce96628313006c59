// Canvas <-> screen coordinates. A message's position is in canvas coordinates; the
// viewport maps them to the screen as screen = canvas * scale + offset.

import type { Position } from './protocol';

export interface Viewport {
  offsetX: number;
  offsetY: number;
  scale: number;
}

export const MIN_SCALE = 0.25;
export const MAX_SCALE = 4;
export const INITIAL_VIEWPORT: Viewport = { offsetX: 0, offsetY: 0, scale: 1 };

export function clampScale(scale: number): number {
  return Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
}

export function screenToCanvas(v: Viewport, p: Position): Position {
  return { x: (p.x - v.offsetX) / v.scale, y: (p.y - v.offsetY) / v.scale };
}

export function canvasToScreen(v: Viewport, p: Position): Position {
  return { x: p.x * v.scale + v.offsetX, y: p.y * v.scale + v.offsetY };
}

export function pan(v: Viewport, dx: number, dy: number): Viewport {
  return { ...v, offsetX: v.offsetX + dx, offsetY: v.offsetY + dy };
}

/** Zooms by `factor` keeping the canvas point under `anchor` (screen) fixed. */
export function zoomAt(v: Viewport, anchor: Position, factor: number): Viewport {
  const scale = clampScale(v.scale * factor);
  const k = scale / v.scale;
  return {
    scale,
    offsetX: anchor.x - (anchor.x - v.offsetX) * k,
    offsetY: anchor.y - (anchor.y - v.offsetY) * k,
  };
}

export interface WheelLike {
  deltaX: number;
  deltaY: number;
  deltaMode: number;
  ctrlKey: boolean;
  metaKey: boolean;
}

/**
 * Browsers report a trackpad pinch as a wheel event with ctrlKey set, and a two-finger
 * scroll as small pixel deltas often with a horizontal part. A mouse wheel gives line
 * deltas (Firefox) or large whole vertical steps (Chromium, Safari). The first and
 * last zoom, the two-finger scroll pans.
 */
export function classifyWheel(e: WheelLike): 'zoom' | 'pan' {
  if (e.ctrlKey || e.metaKey) return 'zoom';
  if (e.deltaMode !== 0) return 'zoom';
  if (e.deltaX === 0 && Number.isInteger(e.deltaY) && Math.abs(e.deltaY) >= 50) return 'zoom';
  return 'pan';
}

/** Zoom factor for a wheel delta in pixels; pinches give small deltas, wheels big ones. */
export function wheelZoomFactor(e: WheelLike): number {
  const pixels = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
  const limited = Math.max(-100, Math.min(100, pixels));
  return Math.exp(-limited * (e.ctrlKey ? 0.01 : 0.002));
}

export interface Pinch {
  a: Position;
  b: Position;
}

/** New viewport after two touch points moved from `from` to `to`: zoom plus pan. */
export function applyPinch(v: Viewport, from: Pinch, to: Pinch): Viewport {
  const dist = (p: Pinch) => Math.hypot(p.a.x - p.b.x, p.a.y - p.b.y);
  const mid = (p: Pinch) => ({ x: (p.a.x + p.b.x) / 2, y: (p.a.y + p.b.y) / 2 });
  const d0 = dist(from);
  const factor = d0 > 0 ? dist(to) / d0 : 1;
  const m0 = mid(from);
  const m1 = mid(to);
  return zoomAt(pan(v, m1.x - m0.x, m1.y - m0.y), m1, factor);
}

/** The viewport `k` of the way from `a` to `b` (0..1), for a short glide between views. */
export function blendViewport(a: Viewport, b: Viewport, k: number): Viewport {
  const t = Math.min(1, Math.max(0, k));
  return {
    scale: a.scale + (b.scale - a.scale) * t,
    offsetX: a.offsetX + (b.offsetX - a.offsetX) * t,
    offsetY: a.offsetY + (b.offsetY - a.offsetY) * t,
  };
}

/** Ease-out cubic: quick start, gentle stop. */
export function easeOut(t: number): number {
  const u = 1 - Math.min(1, Math.max(0, t));
  return 1 - u * u * u;
}
