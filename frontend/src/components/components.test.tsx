// @vitest-environment jsdom
import { act } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MessageBubble } from './MessageBubble';
import { NameForm } from './NameForm';
import type { CanvasMessage } from '../state/store';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let container: HTMLDivElement;
let root: Root;

beforeEach(() => {
  container = document.createElement('div');
  document.body.appendChild(container);
  root = createRoot(container);
});

afterEach(() => {
  act(() => root.unmount());
  container.remove();
});

const message = (patch: Partial<CanvasMessage>): CanvasMessage => ({
  key: 'm-1',
  own: false,
  userId: 'bob',
  text: 'hi',
  position: { x: 12, y: -7 },
  status: 'received',
  ...patch,
});

describe('MessageBubble', () => {
  it('renders markup in a message as plain text at its canvas position', () => {
    const text = '<img src=x onerror="alert(1)"><b>bold</b>';
    act(() => root.render(<MessageBubble message={message({ text })} onRetry={() => {}} onDismiss={() => {}} />));
    const el = container.querySelector<HTMLElement>('[data-testid="message"]');
    expect(el?.querySelector('.msg__text')?.textContent).toBe(text);
    expect(container.querySelector('img, b')).toBeNull();
    expect(el?.style.left).toBe('12px');
    expect(el?.style.top).toBe('-7px');
  });

  it('shows the server error and a working retry button for a failed message', () => {
    const onRetry = vi.fn();
    act(() =>
      root.render(
        <MessageBubble
          message={message({ key: 'c-1', own: true, status: 'failed', error: 'Rate limit exceeded' })}
          onRetry={onRetry}
          onDismiss={() => {}}
        />,
      ),
    );
    expect(container.querySelector('[role="alert"]')?.textContent).toContain('Rate limit exceeded');
    const retry = [...container.querySelectorAll('button')].find((b) => b.textContent === 'Retry');
    act(() => retry?.click());
    expect(onRetry).toHaveBeenCalledWith('c-1');
  });
});

describe('MessageBubble while queued', () => {
  it('reads "waiting for connection" offline and "sending" during a handover', () => {
    const queued = message({ key: 'c-1', own: true, status: 'queued' });
    act(() => root.render(<MessageBubble message={queued} onRetry={() => {}} onDismiss={() => {}} />));
    expect(container.querySelector('.msg__state')?.textContent).toBe('waiting for connection…');
    act(() => root.render(<MessageBubble message={queued} online onRetry={() => {}} onDismiss={() => {}} />));
    expect(container.querySelector('.msg__state')?.textContent).toBe('sending…');
  });
});

describe('NameForm', () => {
  it('validates as the user types and submits only a valid name', () => {
    const onSubmit = vi.fn();
    act(() => root.render(<NameForm initial="" channel="room" onSubmit={onSubmit} />));
    const input = container.querySelector('input');
    const button = container.querySelector<HTMLButtonElement>('button[type="submit"]');
    if (input === null || button === null) throw new Error('form not rendered');
    expect(button.disabled).toBe(true);

    const type = (value: string) => {
      // React tracks the value through the prototype's setter, so set it there.
      Reflect.set(HTMLInputElement.prototype, 'value', value, input);
      act(() => {
        input.dispatchEvent(new Event('input', { bubbles: true }));
      });
    };
    type('al ice');
    expect(input.getAttribute('aria-invalid')).toBe('true');
    expect(container.querySelector('[role="alert"]')?.textContent).toContain('space');
    expect(button.disabled).toBe(true);

    type('alice');
    expect(input.getAttribute('aria-invalid')).toBe('false');
    expect(button.disabled).toBe(false);
    act(() => button.click());
    expect(onSubmit).toHaveBeenCalledWith('alice');
  });
});
