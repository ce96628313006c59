// @vitest-environment jsdom
import { act } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { canvasToScreen } from '../lib/viewport';
import { StoreContext, ViewContext } from '../state/context';
import { createChatStore, type ChatStore } from '../state/store';
import { createViewStore, type ViewStore } from '../state/view';
import { EdgeMarkers } from './EdgeMarkers';
import { RemoteCursors } from './RemoteCursors';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let container: HTMLDivElement;
let root: Root;
let store: ChatStore;
let view: ViewStore;

beforeEach(() => {
  vi.useFakeTimers();
  container = document.createElement('div');
  document.body.appendChild(container);
  root = createRoot(container);
  store = createChatStore();
  store.getState().setIdentity('me', 'room');
  view = createViewStore();
  view.getState().setSize({ width: 390, height: 700 });
});

afterEach(() => {
  act(() => root.unmount());
  container.remove();
  vi.useRealTimers();
});

function render(children: React.ReactNode) {
  act(() =>
    root.render(
      <StoreContext.Provider value={store}>
        <ViewContext.Provider value={view}>{children}</ViewContext.Provider>
      </StoreContext.Provider>,
    ),
  );
}

const chat = (id: string, user: string, x: number, y: number) =>
  act(() =>
    store.getState().receive({ type: 'chat', message_id: id, channel_id: 'room', user_id: user, payload: id, position: { x, y } }),
  );

const markers = () => [...container.querySelectorAll<HTMLButtonElement>('[data-testid="edge-marker"]')];

describe('EdgeMarkers', () => {
  it('one marker per user for messages off screen, with a count; none for what is in view or own', () => {
    render(<EdgeMarkers />);
    chat('a', 'bob', 1000, 300);
    chat('b', 'bob', 1200, 320);
    chat('c', 'carol', 100, 100); // in view
    chat('d', 'me', 2000, 2000); // own user in another tab
    expect(markers().map((m) => [m.dataset.user, m.dataset.count])).toEqual([['bob', '2']]);
    expect(markers()[0]?.getAttribute('aria-label')).toBe('2 messages from bob, right off screen. Go there.');
    expect(container.querySelector('[data-testid="offscreen-count"]')?.textContent).toBe('2 new messages off screen');
  });

  it('pressing a marker centres the view on the newest of those messages', () => {
    render(<EdgeMarkers />);
    chat('a', 'bob', 1000, 300);
    chat('b', 'bob', 1100, 320);
    act(() => markers()[0]?.click());
    act(() => {
      vi.advanceTimersByTime(1000); // the glide
    });
    expect(canvasToScreen(view.getState().viewport, { x: 1100, y: 320 })).toEqual({ x: 195, y: 350 });
    // Both are in view now.
    expect(markers()).toEqual([]);
    expect(container.querySelector('[data-testid="offscreen-count"]')).toBeNull();
  });

  it('a message just off the left edge after panning gets a marker pointing left', () => {
    render(<EdgeMarkers />);
    chat('a', 'bob', 1000, 300);
    act(() => view.getState().goTo({ x: 1200, y: 320 }));
    expect(markers()[0]?.getAttribute('aria-label')).toBe('1 message from bob, left off screen. Go there.');
  });

  it('a moving cursor off screen gets a marker until it goes idle', () => {
    render(<EdgeMarkers />);
    act(() => store.getState().receive({ type: 'cursor', channel_id: 'room', user_id: 'dave', position: { x: -500, y: 50 } }));
    expect(markers().map((m) => [m.dataset.user, m.dataset.count])).toEqual([['dave', '0']]);
    expect(markers()[0]?.getAttribute('aria-label')).toBe("dave's pointer, above left off screen. Go there.");
    act(() => {
      vi.advanceTimersByTime(5000);
    });
    expect(markers()).toEqual([]);
  });
});

describe('RemoteCursors', () => {
  it("draws others' cursors with their names, hides idle ones and removes those who leave", () => {
    render(<RemoteCursors />);
    act(() => store.getState().receive({ type: 'cursor', channel_id: 'room', user_id: 'bob', position: { x: 40, y: 60 } }));
    const cursor = () => container.querySelector<HTMLElement>('[data-testid="cursor"][data-user="bob"]');
    expect(cursor()?.textContent).toBe('bob');
    expect(cursor()?.style.transform).toBe('translate(40px, 60px)');
    expect(cursor()?.dataset.idle).toBeUndefined();
    act(() => {
      vi.advanceTimersByTime(5000);
    });
    expect(cursor()?.dataset.idle).toBe('');
    act(() => store.getState().receive({ type: 'user_left', channel_id: 'room', user_id: 'bob' }));
    expect(cursor()).toBeNull();
  });
});

describe('RemoteCursors motion', () => {
  const move = (x: number, y: number) =>
    act(() => store.getState().receive({ type: 'cursor', channel_id: 'room', user_id: 'bob', position: { x, y } }));
  const shown = () => container.querySelector<HTMLElement>('[data-testid="cursor"]')?.style.transform;

  function withReducedMotion(reduce: boolean) {
    vi.useRealTimers();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance', 'requestAnimationFrame', 'cancelAnimationFrame'] });
    vi.stubGlobal('matchMedia', (query: string) => ({
      matches: reduce && query.includes('reduce'),
      addEventListener: () => {},
      removeEventListener: () => {},
    }));
  }

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('glides towards a new position over a few frames', () => {
    withReducedMotion(false);
    render(<RemoteCursors />);
    move(0, 0);
    move(100, 0);
    act(() => {
      vi.advanceTimersByTime(16);
    });
    const mid = shown();
    expect(mid).not.toBe('translate(0px, 0px)');
    expect(mid).not.toBe('translate(100px, 0px)');
    act(() => {
      vi.advanceTimersByTime(1000);
    });
    expect(shown()).toBe('translate(100px, 0px)');
  });

  it('jumps under prefers-reduced-motion', () => {
    withReducedMotion(true);
    render(<RemoteCursors />);
    move(0, 0);
    move(100, 0);
    act(() => {
      vi.advanceTimersByTime(16);
    });
    expect(shown()).toBe('translate(100px, 0px)');
  });
});
