// Browser suite for live cursors: two pages on different replicas see each other's
// pointers move, named and in place; idle ones hide, departed ones go. Chromium pages
// against two real gateway replicas sharing a real Redis.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkA11y } from './axe.mjs';
import { waitFor } from './harness.mjs';
import { replicaSuite } from './suite.mjs';
import { canvasBox, joinAs, waitOnline } from './page.mjs';

const RUN = Date.now().toString(36);


describe('live cursors in a real browser, across two gateway replicas', { timeout: 120_000 }, () => {
  const suite = replicaSuite('cursors');
  const { step, shot, newPage, pageErrors } = suite;

  const cursorOf = (page, user) => page.locator(`[data-testid="cursor"][data-user="${user}"]`);

  /** Waits until `user`'s cursor on `page` is drawn at canvas point (x, y), glide finished. */
  async function waitCursorAt(page, user, x, y) {
    // The glide runs in animation frames, which Chromium runs only in the tab in front.
    await page.bringToFront();
    const cursor = cursorOf(page, user);
    const canvas = await canvasBox(page);
    await waitFor(`${user}'s cursor at (${x}, ${y})`, async () => {
      if ((await cursor.getAttribute('data-x')) !== String(x) || (await cursor.getAttribute('data-y')) !== String(y)) return false;
      const b = await cursor.boundingBox();
      return b !== null && Math.abs(b.x - (canvas.x + x)) < 1.5 && Math.abs(b.y - (canvas.y + y)) < 1.5;
    }, 5000);
  }

  step("two pages on different replicas see each other's cursors move, then hide when idle and go when the user leaves", async () => {
    const channel = `cursors-${RUN}`;
    const alice = await newPage('alice');
    await joinAs(alice, suite.gateways[0].origin, 'alice', channel);
    const bob = await newPage('bob');
    await joinAs(bob, suite.gateways[1].origin, 'bob', channel);
    await waitOnline(alice, ['alice', 'bob']);

    const a = await canvasBox(alice);
    await alice.mouse.move(a.x + 300, a.y + 200);
    await alice.mouse.move(a.x + 420, a.y + 260, { steps: 2 });
    await waitCursorAt(bob, 'alice', 420, 260);
    assert.equal(await cursorOf(bob, 'alice').locator('.cursor__name').textContent(), 'alice');
    assert.equal(await cursorOf(alice, 'alice').count(), 0, 'a page does not draw its own cursor');

    const b = await canvasBox(bob);
    await bob.mouse.move(b.x + 640, b.y + 330, { steps: 2 });
    await waitCursorAt(alice, 'bob', 640, 330);
    await shot(bob, '01-cursor-of-alice');
    await checkA11y(bob, 'cursors', suite.logDir);

    // Idle for a few seconds: hidden, but still known.
    await waitFor('the idle cursor to hide', async () => (await cursorOf(bob, 'alice').getAttribute('data-idle')) !== null, 10_000);
    await waitFor('the idle cursor to fade out', async () => (await cursorOf(bob, 'alice').evaluate((el) => getComputedStyle(el).opacity)) === '0', 2000);
    await alice.mouse.move(a.x + 500, a.y + 300);
    await waitCursorAt(bob, 'alice', 500, 300);
    assert.equal(await cursorOf(bob, 'alice').getAttribute('data-idle'), null, 'moving shows it again');

    await alice.close();
    await cursorOf(bob, 'alice').waitFor({ state: 'detached', timeout: 10_000 });
    await bob.close();
  });

  it('raised no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
