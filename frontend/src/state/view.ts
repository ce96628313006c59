// What part of the canvas is on screen. Separate from the chat store: it changes on every
// drag and wheel step, and only the canvas and its overlays need it.

import { createStore, type StoreApi } from 'zustand/vanilla';
import { centreOn, type Size } from '../lib/edges';
import type { Position } from '../lib/protocol';
import { blendViewport, easeOut, INITIAL_VIEWPORT, type Viewport } from '../lib/viewport';

/** Length of the glide to a spot (marker, followed user); none under reduced motion. */
export const GLIDE_MS = 300;

export interface ViewState {
  viewport: Viewport;
  /** The canvas element's size in CSS pixels. */
  size: Size;
  setViewport: (next: Viewport | ((v: Viewport) => Viewport)) => void;
  setSize: (size: Size) => void;
  /**
   * Pans so the canvas point is in the middle of the view, keeping the zoom; with `glide`,
   * over GLIDE_MS (any drag, wheel or key press takes over at once).
   */
  goTo: (target: Position, glide?: boolean) => void;
  /** Back to the origin at 100 %. */
  recentre: () => void;
}

export type ViewStore = StoreApi<ViewState>;

export function createViewStore(): ViewStore {
  let frame: number | null = null;
  const stopGlide = () => {
    if (frame !== null) cancelAnimationFrame(frame);
    frame = null;
  };
  return createStore<ViewState>()((set, get) => ({
    viewport: INITIAL_VIEWPORT,
    size: { width: 0, height: 0 },
    setViewport(next) {
      stopGlide();
      set((s) => ({ viewport: typeof next === 'function' ? next(s.viewport) : next }));
    },
    setSize(size) {
      const { width, height } = get().size;
      if (width !== size.width || height !== size.height) set({ size });
    },
    goTo(target, glide = false) {
      stopGlide();
      const from = get().viewport;
      const to = centreOn(from, get().size, target);
      if (!glide || typeof requestAnimationFrame !== 'function') {
        set({ viewport: to });
        return;
      }
      let start: number | null = null;
      const step = (now: number) => {
        start ??= now;
        const t = (now - start) / GLIDE_MS;
        set({ viewport: t >= 1 ? to : blendViewport(from, to, easeOut(t)) });
        frame = t >= 1 ? null : requestAnimationFrame(step);
      };
      frame = requestAnimationFrame(step);
    },
    recentre() {
      stopGlide();
      set({ viewport: INITIAL_VIEWPORT });
    },
  }));
}
