// What part of the canvas is on screen. Separate from the chat store: it changes on every
// drag and wheel step, and only the canvas and its overlays need it.

import { createStore, type StoreApi } from 'zustand/vanilla';
import { centreOn, type Size } from '../lib/edges';
import type { Position } from '../lib/protocol';
import { INITIAL_VIEWPORT, type Viewport } from '../lib/viewport';

export interface ViewState {
  viewport: Viewport;
  /** The canvas element's size in CSS pixels. */
  size: Size;
  setViewport(next: Viewport | ((v: Viewport) => Viewport)): void;
  setSize(size: Size): void;
  /** Pans so the canvas point is in the middle of the view, keeping the zoom. */
  goTo(target: Position): void;
  /** Back to the origin at 100 %. */
  recentre(): void;
}

export type ViewStore = StoreApi<ViewState>;

export function createViewStore(): ViewStore {
  return createStore<ViewState>()((set, get) => ({
    viewport: INITIAL_VIEWPORT,
    size: { width: 0, height: 0 },
    setViewport(next) {
      set((s) => ({ viewport: typeof next === 'function' ? next(s.viewport) : next }));
    },
    setSize(size) {
      const { width, height } = get().size;
      if (width !== size.width || height !== size.height) set({ size });
    },
    goTo(target) {
      set((s) => ({ viewport: centreOn(s.viewport, s.size, target) }));
    },
    recentre() {
      set({ viewport: INITIAL_VIEWPORT });
    },
  }));
}
