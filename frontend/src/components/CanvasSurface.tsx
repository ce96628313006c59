import { useCallback, useEffect, useRef, useState, type KeyboardEvent, type PointerEvent } from 'react';
import { userColour } from '../lib/identity';
import type { Position } from '../lib/protocol';
import {
  applyPinch,
  canvasToScreen,
  classifyWheel,
  INITIAL_VIEWPORT,
  pan,
  screenToCanvas,
  wheelZoomFactor,
  zoomAt,
  type Viewport,
} from '../lib/viewport';
import { useChat, useChatStore, useClient, useView, useViewStore } from '../state/context';
import { Composer, type ComposerState } from './Composer';
import { EdgeMarkers } from './EdgeMarkers';
import { MessageBubble } from './MessageBubble';
import { RemoteCursors } from './RemoteCursors';

/** Pointer travel (px) under which a press counts as a click rather than a drag. */
const CLICK_SLOP = 5;
const KEY_PAN = 60;

interface Gesture {
  pointers: Map<number, Position>;
  start: Position;
  moved: boolean;
}

function localPoint(el: HTMLElement, clientX: number, clientY: number): Position {
  const r = el.getBoundingClientRect();
  return { x: clientX - r.left, y: clientY - r.top };
}

function onInteractive(target: EventTarget | null): boolean {
  return target instanceof Element && target.closest('[data-interactive]') !== null;
}

const PROBLEM_TEXT = {
  empty: 'Type something first.',
  too_large: 'Too long to send: shorten the message (about 4 KB at most).',
} as const;

/** The pannable, zoomable canvas with the messages and the composer. */
export function CanvasSurface() {
  const surfaceRef = useRef<HTMLDivElement>(null);
  const view = useViewStore();
  const viewport = useView((v) => v.viewport);
  const setViewport = view.getState().setViewport;
  const [composer, setComposer] = useState<ComposerState | null>(null);
  const gesture = useRef<Gesture | null>(null);
  const messages = useChat((s) => s.messages);
  const online = useChat((s) => s.connection.status === 'connected');
  const self = useChat((s) => s.userId) ?? '';
  const store = useChatStore();
  const client = useClient();

  const openComposerAt = useCallback(
    (screen: Position, vp: Viewport) => {
      const position = screenToCanvas(vp, screen);
      setComposer((c) => ({ position, draft: c?.draft ?? '', problem: null }));
      // Others see where this user is about to write, also on touch screens without hover.
      client?.moveCursor(position);
    },
    [client],
  );

  const closeComposer = useCallback(() => {
    setComposer(null);
    surfaceRef.current?.focus({ preventScroll: true });
  }, []);

  const submit = useCallback(() => {
    if (composer === null || client === null) return;
    const result = client.send(composer.draft, composer.position);
    if (result.ok) {
      closeComposer();
    } else {
      setComposer({ ...composer, problem: PROBLEM_TEXT[result.problem] });
    }
  }, [client, composer, closeComposer]);

  // The view's size, for edge markers, "go to" and the keyboard's writing point.
  useEffect(() => {
    const el = surfaceRef.current;
    if (el === null) return;
    const measure = () => view.getState().setSize({ width: el.clientWidth, height: el.clientHeight });
    measure();
    if (typeof ResizeObserver === 'undefined') return;
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, [view]);

  // React's wheel listener is passive; zooming must stop the page from scrolling.
  useEffect(() => {
    const el = surfaceRef.current;
    if (el === null) return;
    const onWheel = (e: WheelEvent) => {
      if (onInteractive(e.target) && !e.ctrlKey) return;
      e.preventDefault();
      const anchor = localPoint(el, e.clientX, e.clientY);
      if (classifyWheel(e) === 'zoom') {
        setViewport((v) => zoomAt(v, anchor, wheelZoomFactor(e)));
      } else {
        setViewport((v) => pan(v, -e.deltaX, -e.deltaY));
      }
    };
    el.addEventListener('wheel', onWheel, { passive: false });
    return () => el.removeEventListener('wheel', onWheel);
  }, [setViewport]);

  const onPointerDown = (e: PointerEvent<HTMLDivElement>) => {
    if (onInteractive(e.target) || (e.pointerType === 'mouse' && e.button !== 0)) return;
    const el = e.currentTarget;
    const p = localPoint(el, e.clientX, e.clientY);
    // No compatibility mousedown: after a tap it would move focus from the new composer to
    // the canvas and close it. Focus is set explicitly instead.
    e.preventDefault();
    if (composer === null) el.focus({ preventScroll: true });
    el.setPointerCapture(e.pointerId);
    if (gesture.current === null) {
      gesture.current = { pointers: new Map([[e.pointerId, p]]), start: p, moved: false };
    } else {
      gesture.current.pointers.set(e.pointerId, p);
      gesture.current.moved = true;
    }
  };

  const onPointerMove = (e: PointerEvent<HTMLDivElement>) => {
    const g = gesture.current;
    const p = localPoint(e.currentTarget, e.clientX, e.clientY);
    // A hovering mouse or pen is a cursor; a finger on the screen is a gesture.
    if (e.pointerType !== 'touch') client?.moveCursor(screenToCanvas(view.getState().viewport, p));
    const prev = g?.pointers.get(e.pointerId);
    if (g === undefined || g === null || prev === undefined) return;
    if (g.pointers.size >= 2) {
      const [a, b] = [...g.pointers.entries()];
      if (a === undefined || b === undefined) return;
      const from = { a: a[1], b: b[1] };
      const to = a[0] === e.pointerId ? { a: p, b: b[1] } : b[0] === e.pointerId ? { a: a[1], b: p } : from;
      setViewport((v) => applyPinch(v, from, to));
    } else {
      if (!g.moved && Math.hypot(p.x - g.start.x, p.y - g.start.y) < CLICK_SLOP) return;
      g.moved = true;
      setViewport((v) => pan(v, p.x - prev.x, p.y - prev.y));
    }
    g.pointers.set(e.pointerId, p);
  };

  const onPointerEnd = (e: PointerEvent<HTMLDivElement>, cancelled: boolean) => {
    const g = gesture.current;
    if (g === null || !g.pointers.has(e.pointerId)) return;
    g.pointers.delete(e.pointerId);
    if (g.pointers.size > 0) return;
    gesture.current = null;
    if (!g.moved && !cancelled) openComposerAt(g.start, viewport);
  };

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    if (e.target !== e.currentTarget) return;
    const el = e.currentTarget;
    const centre = { x: el.clientWidth / 2, y: el.clientHeight / 2 };
    const actions: Record<string, () => void> = {
      Enter: () => openComposerAt(centre, viewport),
      ' ': () => openComposerAt(centre, viewport),
      ArrowLeft: () => setViewport((v) => pan(v, KEY_PAN, 0)),
      ArrowRight: () => setViewport((v) => pan(v, -KEY_PAN, 0)),
      ArrowUp: () => setViewport((v) => pan(v, 0, KEY_PAN)),
      ArrowDown: () => setViewport((v) => pan(v, 0, -KEY_PAN)),
      '+': () => setViewport((v) => zoomAt(v, centre, 1.25)),
      '=': () => setViewport((v) => zoomAt(v, centre, 1.25)),
      '-': () => setViewport((v) => zoomAt(v, centre, 0.8)),
      '0': () => setViewport(INITIAL_VIEWPORT),
    };
    const action = actions[e.key];
    if (action === undefined) return;
    e.preventDefault();
    action();
  };

  const onRetry = useCallback((key: string) => client?.retry(key), [client]);
  const onDismiss = useCallback((key: string) => store.getState().dismiss(key), [store]);
  const { offsetX, offsetY, scale } = viewport;
  const moved = offsetX !== INITIAL_VIEWPORT.offsetX || offsetY !== INITIAL_VIEWPORT.offsetY || scale !== INITIAL_VIEWPORT.scale;

  return (
    <div
      ref={surfaceRef}
      className="canvas"
      data-testid="canvas"
      data-scale={scale}
      data-offset-x={offsetX}
      data-offset-y={offsetY}
      tabIndex={0}
      role="application"
      aria-roledescription="chat canvas"
      aria-label="Chat canvas. Click, or press Enter to write at the cross in the middle. Drag or use arrow keys to move, wheel or plus and minus to zoom, 0 to go back to the start."
      onPointerDown={onPointerDown}
      onPointerMove={onPointerMove}
      onPointerUp={(e) => onPointerEnd(e, false)}
      onPointerCancel={(e) => onPointerEnd(e, true)}
      onKeyDown={onKeyDown}
    >
      <div
        className="canvas__grid"
        aria-hidden="true"
        style={{
          backgroundSize: `${40 * scale}px ${40 * scale}px`,
          backgroundPosition: `${offsetX}px ${offsetY}px`,
        }}
      />
      <div
        className="canvas__layer"
        style={{ transform: `translate(${offsetX}px, ${offsetY}px) scale(${scale})` }}
      >
        {messages.map((m) => (
          <MessageBubble key={m.key} message={m} online={online} onRetry={onRetry} onDismiss={onDismiss} />
        ))}
      </div>
      <RemoteCursors />
      {composer === null && <span className="canvas__crosshair" aria-hidden="true" />}
      <EdgeMarkers />
      {moved && (
        <button
          type="button"
          className="button button--small canvas__recentre"
          data-interactive=""
          data-testid="recentre"
          onClick={() => view.getState().recentre()}
        >
          Back to start
        </button>
      )}
      {composer !== null && (
        <Composer
          state={composer}
          screen={canvasToScreen(viewport, composer.position)}
          colour={userColour(self)}
          onChange={(draft) => setComposer({ ...composer, draft, problem: null })}
          onSubmit={submit}
          onCancel={closeComposer}
        />
      )}
      {messages.length === 0 && composer === null && (
        <p className="canvas__hint" aria-hidden="true">
          Click or tap anywhere to write
        </p>
      )}
    </div>
  );
}
