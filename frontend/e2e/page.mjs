// What a person does on the page, as the browser suites use it.

import assert from 'node:assert/strict';
import { waitFor } from './harness.mjs';

export const connection = (page) => page.locator('[data-testid="connection"]');

export async function waitConnected(page, timeout = 15_000) {
  await page.locator('[data-testid="connection"][data-status="connected"]').waitFor({ timeout });
}

export async function joinAs(page, origin, name, channel) {
  await page.goto(`${origin}/?channel=${channel}`);
  const input = page.getByLabel('Your name');
  await input.fill(name);
  await page.getByRole('button', { name: `Join #${channel}` }).click();
  await waitConnected(page);
}

export async function onlineUsers(page) {
  return page.$$eval('[data-testid="online-list"] li', (els) => els.map((e) => e.getAttribute('data-user')));
}

export async function waitOnline(page, expected, timeout = 15_000) {
  await waitFor(
    `online list ${JSON.stringify(expected)}`,
    async () => JSON.stringify(await onlineUsers(page)) === JSON.stringify(expected),
    timeout,
  );
}

export async function canvasBox(page) {
  const box = await page.getByTestId('canvas').boundingBox();
  assert.ok(box, 'canvas is visible');
  return box;
}

/** Clicks the canvas at (x, y) relative to its top-left, types and presses Enter. */
export async function writeAt(page, x, y, text) {
  const box = await canvasBox(page);
  await page.mouse.click(box.x + x, box.y + y);
  const composer = page.getByTestId('composer');
  await composer.waitFor();
  await composer.fill(text);
  await composer.press('Enter');
  await composer.waitFor({ state: 'detached' });
}

export function messageFrom(page, user, text) {
  return page.locator(`[data-testid="message"][data-user="${user}"]`, { hasText: text });
}

export async function viewportOf(page) {
  const canvas = page.getByTestId('canvas');
  return {
    scale: Number(await canvas.getAttribute('data-scale')),
    offsetX: Number(await canvas.getAttribute('data-offset-x')),
    offsetY: Number(await canvas.getAttribute('data-offset-y')),
  };
}
