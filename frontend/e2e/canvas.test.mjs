// Browser suite for finding activity on the canvas: edge markers on a phone, following a
// user, and a connection moved by the gateway (close code 4000) that nobody notices.
// Chromium pages against two real gateway replicas sharing a real Redis.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkA11y } from './axe.mjs';
import { waitFor } from './harness.mjs';
import { replicaSuite } from './suite.mjs';
import { canvasBox, joinAs, messageFrom, viewportOf, waitOnline, writeAt } from './page.mjs';

const RUN = Date.now().toString(36);


function centre(box) {
  return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
}

/** Whether the element's top-left corner (a message's anchor) is inside the canvas. */
async function anchorInside(page, locator) {
  const [box, canvas] = await Promise.all([locator.boundingBox(), canvasBox(page)]);
  if (box === null) return false;
  return box.x >= canvas.x && box.y >= canvas.y && box.x <= canvas.x + canvas.width && box.y <= canvas.y + canvas.height;
}

describe('finding activity on the canvas, against two gateway replicas', { timeout: 180_000 }, () => {
  const suite = replicaSuite('canvas');
  const { step, shot, newPage, pageErrors } = suite;

  step("a desktop page writes far outside a phone's view: the phone shows an edge marker that pans there when tapped", async () => {
    const channel = `edges-${RUN}`;
    const desk = await newPage('desk');
    await joinAs(desk, suite.gateways[0].origin, 'desk', channel);
    const phone = await newPage('phone', { phone: true });
    await joinAs(phone, suite.gateways[1].origin, 'phone', channel);
    await waitOnline(phone, ['desk', 'phone']);

    const text = 'over here, far right';
    await writeAt(desk, 1000, 500, text);
    const seen = messageFrom(phone, 'desk', text);
    await seen.waitFor({ state: 'attached', timeout: 5000 });
    assert.equal(await anchorInside(phone, seen), false, 'the message lands outside the phone view');

    const marker = phone.locator('[data-testid="edge-marker"][data-user="desk"]');
    await marker.waitFor({ timeout: 2000 });
    assert.equal(await marker.getAttribute('data-count'), '1');
    assert.equal(await phone.getByTestId('offscreen-count').textContent(), '1 new message off screen');
    assert.match((await marker.getAttribute('aria-label')) ?? '', /^1 message from desk, (right|below right|above right) off screen\. Go there\.$/);
    const canvas = await canvasBox(phone);
    const m = centre(await marker.boundingBox());
    assert.ok(m.x > canvas.x + canvas.width - 60, `marker at the right edge (x ${m.x})`);
    assert.ok(m.x < canvas.x + canvas.width, 'marker inside the view');
    await shot(phone, '01-phone-edge-marker');
    await checkA11y(phone, 'phone-edge-marker', suite.logDir);

    await phone.bringToFront();
    await phone.tapAt(m.x, m.y);
    await waitFor('the message to be in view after tapping the marker', () => anchorInside(phone, seen), 2000);
    await marker.waitFor({ state: 'detached', timeout: 2000 });
    assert.equal(await phone.getByTestId('offscreen-count').count(), 0);
    assert.equal(await phone.getByTestId('composer').count(), 0, 'tapping a marker does not open the composer');
    await shot(phone, '02-phone-after-marker-tap');

    // Back to start brings the origin back; the message is off screen again.
    await phone.getByTestId('recentre').click();
    assert.deepEqual(await viewportOf(phone), { scale: 1, offsetX: 0, offsetY: 0 });
    await desk.close();
    await phone.close();
  });

  step('clicking a name in the online list pans to that user; Back to start recentres', async () => {
    const channel = `follow-${RUN}`;
    const desk = await newPage('desk-follow');
    await joinAs(desk, suite.gateways[0].origin, 'desk', channel);
    const other = await newPage('other-follow');
    await joinAs(other, suite.gateways[1].origin, 'other', channel);
    await waitOnline(desk, ['desk', 'other']);

    // Drag the view far away first (a drag is slow in a loaded headless browser, and the
    // message fades after 5 s).
    const box = await canvasBox(desk);
    await desk.mouse.move(box.x + 100, box.y + 100);
    await desk.mouse.down();
    await desk.mouse.move(box.x + 1100, box.y + 700, { steps: 2 });
    await desk.mouse.up();
    await writeAt(other, 1100, 700, 'find me here');
    const seen = messageFrom(desk, 'other', 'find me here');
    await seen.waitFor({ state: 'attached', timeout: 5000 });
    assert.equal(await anchorInside(desk, seen), false, 'the message is off screen before following');
    // Chromium runs animation frames only in the tab in front, as for a person looking at it.
    await desk.bringToFront();
    await desk.getByRole('button', { name: /^other: go to/ }).click();
    const canvas = await canvasBox(desk);
    await waitFor('the followed message in the middle of the view', async () => {
      const b = await seen.boundingBox();
      return b !== null && Math.abs(b.x - (canvas.x + canvas.width / 2)) < 2 && Math.abs(b.y - (canvas.y + canvas.height / 2)) < 2;
    }, 2000);
    await shot(desk, '03-followed-user');
    await checkA11y(desk, 'followed-user', suite.logDir);
    await desk.getByTestId('recentre').click();
    assert.deepEqual(await viewportOf(desk), { scale: 1, offsetX: 0, offsetY: 0 });
    assert.equal(await desk.getByTestId('recentre').count(), 0, 'the control goes away at the start');
    await desk.close();
    await other.close();
  });

  step('a connection the gateway moves (close 4000) reconnects at once, shows nothing and keeps chatting', async () => {
    const channel = `handover-${RUN}`;
    const moved = await newPage('moved');
    const routes = [];
    let release = () => {};
    const held = new Promise((r) => {
      release = r;
    });
    // The page's socket goes through the test, which can close it the way a rebalancing
    // gateway does; everything else is passed through untouched. The reconnection is held
    // until the peer has written, so something is sent while the page is between sockets.
    await moved.routeWebSocket(/\/api\/chat/, async (ws) => {
      routes.push(ws);
      if (routes.length > 1) await held;
      ws.connectToServer();
    });
    await joinAs(moved, suite.gateways[0].origin, 'moved', channel);
    const peer = await newPage('peer');
    await joinAs(peer, suite.gateways[1].origin, 'peer', channel);
    await waitOnline(moved, ['moved', 'peer']);

    await moved.evaluate(() => {
      const el = document.querySelector('[data-testid="connection"]');
      window.__statuses = [];
      new MutationObserver(() => window.__statuses.push(el.getAttribute('data-status'))).observe(el, {
        attributes: true,
        attributeFilter: ['data-status'],
      });
    });
    await routes[0].close({ code: 4000, reason: 'rebalance' });
    await waitFor('a second connection', () => routes.length === 2, 3000, 20);
    const resumed = new URL(routes[1].url());
    assert.match(resumed.searchParams.get('since') ?? '', /^\d+$/, 'the new connection resumes with since');
    assert.ok(resumed.searchParams.get('epoch'), 'and the epoch');
    await writeAt(peer, 700, 420, 'during the move');
    await peer.locator('[data-testid="message"][data-status="sent"]', { hasText: 'during the move' }).waitFor({ timeout: 5000 });
    release();
    await messageFrom(moved, 'peer', 'during the move').waitFor({ timeout: 5000 });

    await writeAt(moved, 300, 200, 'after the move');
    await messageFrom(peer, 'moved', 'after the move').waitFor({ timeout: 5000 });
    await writeAt(peer, 500, 300, 'still here');
    await messageFrom(moved, 'peer', 'still here').waitFor({ timeout: 5000 });
    await moved.locator('[data-testid="message"][data-status="sent"]', { hasText: 'after the move' }).waitFor({ timeout: 5000 });

    assert.equal(await messageFrom(moved, 'peer', 'during the move').count(), 1, 'recovered once');
    assert.deepEqual(await moved.evaluate(() => window.__statuses), [], 'the connection state never changed');
    assert.equal(await moved.getByTestId('notice').count(), 0, 'no error shown');
    assert.equal(await moved.getByTestId('missed-notice').count(), 0, 'nothing reported missing');
    await shot(moved, '04-after-handover');
    await moved.close();
    await peer.close();
  });

  step('the accessibility check itself fails on a serious violation', async () => {
    const page = await newPage('axe-self-check');
    await page.goto(`${suite.gateways[0].origin}/?channel=axe-${RUN}`);
    await page.evaluate(() => {
      const b = document.createElement('button');
      document.body.append(b); // a button with no accessible name: "critical" in axe
    });
    await assert.rejects(checkA11y(page, 'self-check', suite.logDir), /button-name/);
    await page.close();
  });

  it('raised no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});

