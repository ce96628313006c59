// Browser end-to-end suite: Chromium pages against two real gateway replicas sharing a
// real Redis. Run with `npm run e2e` (see README.md for the gateway binary it needs).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkA11y } from './axe.mjs';
import { artifactsDir, launchBrowser, startGateway, waitFor } from './harness.mjs';
import { replicaSuite } from './suite.mjs';
import { canvasBox, connection, joinAs, messageFrom, viewportOf, waitConnected, waitOnline, writeAt } from './page.mjs';

const CHANNEL = `e2e-${Date.now().toString(36)}`;
const RATE_LIMIT = 8;
const FADE_MS = 5000;


describe('CanvasChat in a real browser against two gateway replicas', { timeout: 240_000 }, () => {
  let alice; // page on replica 1
  let bob; // page on replica 2

  const suite = replicaSuite('', { env: { CANVASCHAT_RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT) } });
  const { step, shot, newPage, pageErrors } = suite;

  step('two pages on different replicas see each other in the online list', async () => {
    alice = await newPage('alice');
    await alice.goto(`${suite.gateways[0].origin}/?channel=${CHANNEL}`);
    const name = alice.getByLabel('Your name');
    await name.fill('not valid!');
    assert.equal(await name.getAttribute('aria-invalid'), 'true');
    assert.ok(await alice.getByRole('button', { name: `Join #${CHANNEL}` }).isDisabled());
    await shot(alice, '01-name-form-invalid');
    await checkA11y(alice, 'name-form', suite.logDir);
    await name.fill('alice');
    await alice.getByRole('button', { name: `Join #${CHANNEL}` }).click();
    await waitConnected(alice);

    bob = await newPage('bob');
    await joinAs(bob, suite.gateways[1].origin, 'bob', CHANNEL);

    await waitOnline(alice, ['alice', 'bob']);
    await waitOnline(bob, ['alice', 'bob']);
    assert.equal(await bob.getByTestId('online-count').textContent(), '2 online');
    await shot(alice, '02-both-online');
    await checkA11y(alice, 'connected', suite.logDir);
  });

  step('click, type and Enter on one page shows the text at the same canvas spot on the other, then it fades', async () => {
    const text = 'Hello from alice <b>not bold</b>';
    await writeAt(alice, 400, 260, text);

    const own = messageFrom(alice, 'alice', text);
    await own.waitFor();
    await alice.locator('[data-testid="message"][data-user="alice"][data-status="sent"]').waitFor({ timeout: 5000 });

    const seen = messageFrom(bob, 'alice', text);
    await seen.waitFor({ timeout: 5000 });
    const appearedAt = Date.now();
    assert.equal(await seen.getAttribute('data-x'), '400');
    assert.equal(await seen.getAttribute('data-y'), '260');
    assert.equal(await seen.locator('.msg__text').textContent(), text, 'markup is shown as text');
    assert.equal(await bob.getByTestId('announcer').textContent(), `alice says: ${text}`, 'read to screen readers');
    assert.equal(await bob.locator('[data-testid="message"] b').count(), 0);

    const [aBox, bBox, aCanvas, bCanvas] = await Promise.all([
      own.boundingBox(),
      seen.boundingBox(),
      canvasBox(alice),
      canvasBox(bob),
    ]);
    assert.ok(aBox && bBox);
    assert.ok(Math.abs(aBox.x - aCanvas.x - (bBox.x - bCanvas.x)) < 1, 'same x on both canvases');
    assert.ok(Math.abs(aBox.y - aCanvas.y - (bBox.y - bCanvas.y)) < 1, 'same y on both canvases');
    await shot(alice, '03-message-sender');
    await shot(bob, '04-message-receiver');
    await checkA11y(bob, 'message-shown', suite.logDir);

    await seen.waitFor({ state: 'detached', timeout: FADE_MS + 3000 });
    const visibleFor = Date.now() - appearedAt;
    assert.ok(visibleFor >= FADE_MS - 1500, `message faded after ${visibleFor} ms, expected about ${FADE_MS}`);
    await own.waitFor({ state: 'detached', timeout: FADE_MS + 3000 });
  });

  step('works from the keyboard, and skips the fade animation under prefers-reduced-motion', async () => {
    await bob.emulateMedia({ reducedMotion: 'reduce' });
    const canvas = alice.getByTestId('canvas');
    await canvas.focus();
    await alice.keyboard.press('Enter');
    const composer = alice.getByTestId('composer');
    await composer.waitFor();
    assert.ok(await composer.evaluate((el) => el === document.activeElement), 'the composer has focus');
    await checkA11y(alice, 'composer-open', suite.logDir);
    await alice.keyboard.type('never sent');
    await alice.keyboard.press('Escape');
    await composer.waitFor({ state: 'detached' });
    assert.ok(await canvas.evaluate((el) => el === document.activeElement), 'focus returns to the canvas');

    await alice.keyboard.press('Enter');
    await composer.waitFor();
    await alice.keyboard.type('from the keyboard');
    await alice.keyboard.press('Enter');
    const seen = messageFrom(bob, 'alice', 'from the keyboard');
    await seen.waitFor({ timeout: 5000 });
    const box = await canvasBox(alice);
    assert.ok(Math.abs(Number(await seen.getAttribute('data-x')) - box.width / 2) < 1, 'written at the centre of the view');
    assert.ok(Math.abs(Number(await seen.getAttribute('data-y')) - box.height / 2) < 1);
    assert.equal(await messageFrom(bob, 'alice', 'never sent').count(), 0);

    assert.equal(await seen.evaluate((el) => getComputedStyle(el).animationName), 'none');
    const own = alice.locator('[data-testid="message"][data-status="sent"]', { hasText: 'from the keyboard' });
    await own.waitFor({ timeout: 5000 });
    assert.equal(await own.evaluate((el) => getComputedStyle(el).animationName), 'msg-fade');
    await seen.waitFor({ state: 'detached', timeout: FADE_MS + 3000 });
    await bob.emulateMedia({ reducedMotion: 'no-preference' });

    const link = await alice.getByRole('button', { name: 'Copy link' }).getAttribute('data-link');
    assert.equal(link, `${suite.gateways[0].origin}/?channel=${CHANNEL}`);
  });

  step('positions stay in canvas coordinates after zooming and panning', async () => {
    const box = await canvasBox(bob);
    await bob.mouse.move(box.x + 600, box.y + 400);
    await bob.mouse.wheel(0, -100);
    await bob.mouse.down();
    await bob.mouse.move(box.x + 500, box.y + 450, { steps: 8 });
    await bob.mouse.up();
    const vp = await viewportOf(bob);
    assert.ok(vp.scale > 1, `wheel zoomed in (scale ${vp.scale})`);
    assert.notEqual(vp.offsetX, 0);
    assert.equal(await bob.getByTestId('composer').count(), 0, 'a drag does not open the composer');

    const text = 'where am I?';
    await writeAt(alice, 200, 150, text);
    const seen = messageFrom(bob, 'alice', text);
    await seen.waitFor({ timeout: 5000 });
    const b = await seen.boundingBox();
    assert.ok(b);
    assert.ok(Math.abs(b.x - box.x - (200 * vp.scale + vp.offsetX)) < 1.5, 'x follows the zoomed viewport');
    assert.ok(Math.abs(b.y - box.y - (150 * vp.scale + vp.offsetY)) < 1.5, 'y follows the zoomed viewport');
    await shot(bob, '05-zoomed-and-panned');

    await bob.getByTestId('canvas').focus();
    await bob.keyboard.press('0');
    assert.deepEqual(await viewportOf(bob), { scale: 1, offsetX: 0, offsetY: 0 });

    // Trackpad: a two-finger scroll (small pixel deltas) pans, a pinch (ctrl + wheel) zooms.
    await bob.mouse.wheel(12.5, 7.5);
    await waitFor('two-finger pan', async () => {
      const v = await viewportOf(bob);
      return v.offsetX === -12.5 && v.offsetY === -7.5 && v.scale === 1;
    });
    await bob.keyboard.down('Control');
    await bob.mouse.wheel(0, -8);
    await bob.keyboard.up('Control');
    await waitFor('trackpad pinch zoom', async () => (await viewportOf(bob)).scale > 1);
    await bob.keyboard.press('0');
  });

  step("closing a page updates the other's online list", async () => {
    await bob.close();
    bob = null;
    await waitOnline(alice, ['alice'], 10_000);
    assert.equal(await alice.getByTestId('online-count').textContent(), '1 online');
    await shot(alice, '06-after-bob-left');
  });

  step('a restarted gateway: the page reconnects by itself, sends what was typed offline, keeps working', async () => {
    bob = await newPage('bob');
    await bob.goto(`${suite.gateways[1].origin}/?channel=${CHANNEL}`);
    // A new tab offers the remembered name; Enter keeps it.
    assert.equal(await bob.getByLabel('Your name').inputValue(), 'bob');
    await bob.getByLabel('Your name').press('Enter');
    await waitConnected(bob);
    await waitOnline(bob, ['alice', 'bob']);
    await waitOnline(alice, ['alice', 'bob']);

    await suite.gateways[0].stop();
    await alice.locator('[data-testid="connection"][data-status="reconnecting"]').waitFor({ timeout: 10_000 });
    assert.match(await connection(alice).textContent(), /Reconnecting in \d+ s/);
    assert.equal(await alice.getByTestId('online-count').textContent(), 'Offline');
    await shot(alice, '07-reconnecting');
    await checkA11y(alice, 'reconnecting', suite.logDir);

    const offline = 'typed while offline';
    await writeAt(alice, 300, 420, offline);
    await alice.locator('[data-testid="message"][data-status="queued"]', { hasText: offline }).waitFor();
    await shot(alice, '08-queued-offline');
    await checkA11y(alice, 'queued-offline', suite.logDir);
    await waitOnline(bob, ['bob'], 15_000);

    await suite.gateways[0].startAndWait();
    await waitConnected(alice, 40_000);
    await messageFrom(bob, 'alice', offline).waitFor({ timeout: 10_000 });
    await alice.locator('[data-testid="message"][data-status="sent"]', { hasText: offline }).waitFor({ timeout: 5000 });
    await waitOnline(alice, ['alice', 'bob']);
    await waitOnline(bob, ['alice', 'bob']);

    const after = 'back online';
    await writeAt(alice, 500, 200, after);
    await messageFrom(bob, 'alice', after).waitFor({ timeout: 5000 });
    await shot(alice, '09-reconnected');
  });

  step('a rate-limited message shows the server error with a retry button, also on a phone-sized page', async () => {
    const carol = await newPage('carol');
    await carol.setViewportSize({ width: 390, height: 844 });
    await carol.goto(`${suite.gateways[1].origin}/?channel=${CHANNEL}-limits`);
    await carol.getByLabel('Your name').fill('carol');
    await carol.getByRole('button', { name: `Join #${CHANNEL}-limits` }).click();
    await waitConnected(carol);
    await waitOnline(carol, ['carol']);

    // The gateway counts per wall-clock minute, so a burst that straddles a minute boundary
    // gets up to twice the limit through; 2 * limit + 1 messages always hit it.
    const failed = carol.locator('[data-testid="message"][data-status="failed"]');
    for (let i = 0; i <= 2 * RATE_LIMIT; i++) {
      await writeAt(carol, 20 + (i % 3) * 115, 40 + Math.floor(i / 3) * 110, `msg ${i}`);
      if (i < RATE_LIMIT) continue;
      const text = carol.locator('.msg__text', { hasText: new RegExp(`^msg ${i}$`) });
      const settled = carol
        .locator('[data-testid="message"][data-status="sent"], [data-testid="message"][data-status="failed"]')
        .filter({ has: text });
      await settled.waitFor({ timeout: 5000 });
      if ((await failed.count()) > 0) break;
    }
    await failed.first().waitFor({ timeout: 1000 });
    const error = (await failed.first().locator('[role="alert"]').textContent()) ?? '';
    assert.match(error, /^Not sent: .+/);
    assert.equal(await failed.first().getByRole('button', { name: 'Retry' }).count(), 1);
    await shot(carol, '10-phone-rate-limited');
    await checkA11y(carol, 'phone-failed-message', suite.logDir);
    await carol.close();
  });

  step('on a touch screen a tap writes, a pinch zooms and a one-finger drag pans', async () => {
    const page = await newPage('touch');
    await page.setViewportSize({ width: 390, height: 844 });
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 5 });
    await page.goto(`${suite.gateways[1].origin}/?channel=${CHANNEL}-touch`);
    await page.getByRole('button', { name: `Join #${CHANNEL}-touch` }).click();
    await waitConnected(page);
    const box = await canvasBox(page);
    const touch = (type, points) =>
      cdp.send('Input.dispatchTouchEvent', {
        type,
        touchPoints: points.map(([x, y], id) => ({ x: box.x + x, y: box.y + y, id })),
      });

    await touch('touchStart', [[100, 300]]);
    await touch('touchEnd', []);
    const composer = page.getByTestId('composer');
    await composer.waitFor();
    await composer.press('Escape');
    await composer.waitFor({ state: 'detached' });

    await touch('touchStart', [[150, 400], [250, 400]]);
    for (let i = 1; i <= 5; i++) await touch('touchMove', [[150 - i * 10, 400], [250 + i * 10, 400]]);
    await touch('touchEnd', []);
    const pinched = await viewportOf(page);
    assert.ok(Math.abs(pinched.scale - 2) < 0.05, `pinch zoomed to ${pinched.scale}, expected 2`);
    // The midpoint between the fingers stays over the same canvas point.
    assert.ok(Math.abs(200 - (200 * pinched.scale + pinched.offsetX)) < 1);

    await touch('touchStart', [[200, 500]]);
    for (let i = 1; i <= 6; i++) await touch('touchMove', [[200 + i * 10, 500 + i * 10]]);
    await touch('touchEnd', []);
    const dragged = await viewportOf(page);
    assert.ok(Math.abs(dragged.offsetX - pinched.offsetX - 60) < 1, 'one finger pans horizontally');
    assert.ok(Math.abs(dragged.offsetY - pinched.offsetY - 60) < 1, 'one finger pans vertically');
    assert.equal(await composer.count(), 0, 'gestures do not open the composer');
    await shot(page, '11-phone-after-pinch');
    await page.close();
  });

  it('raised no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});

describe("the README's local run: one gateway with its embedded broker, two windows of one browser", { timeout: 120_000 }, () => {
  let logDir;
  let gateway;
  let context;
  const shot = (page, name) => page.screenshot({ path: join(logDir, `${name}.png`) });

  before(async () => {
    logDir = artifactsDir();
    gateway = await startGateway('gateway-embedded', { redisUrl: undefined, logDir });
    context = await launchBrowser();
  });

  after(async () => {
    await context?.cleanup();
    await gateway?.stop();
  });

  it('two people chat across two windows, then one changes name', async () => {
    const errors = [];
    context.on('page', (page) => page.on('pageerror', (e) => errors.push(e.message)));
    const first = await context.newPage();
    await first.goto(`${gateway.origin}/`);
    await first.getByLabel('Your name').fill('dora');
    await first.getByRole('button', { name: 'Join #default' }).click();
    await waitConnected(first);

    const second = await context.newPage();
    await second.goto(`${gateway.origin}/`);
    assert.equal(await second.getByLabel('Your name').inputValue(), 'dora', 'the remembered name is offered');
    await second.getByLabel('Your name').fill('eve');
    await second.getByRole('button', { name: 'Join #default' }).click();
    await waitConnected(second);
    await waitOnline(first, ['dora', 'eve']);

    await writeAt(first, 250, 180, 'hi eve');
    await messageFrom(second, 'dora', 'hi eve').waitFor({ timeout: 5000 });
    await writeAt(second, 420, 300, 'hi dora');
    await messageFrom(first, 'eve', 'hi dora').waitFor({ timeout: 5000 });
    await shot(second, '12-embedded-two-windows');

    await first.reload();
    await waitConnected(first); // a reloaded tab keeps its own name
    await first.getByRole('button', { name: /You are dora/ }).click();
    await first.getByLabel('Your name').fill('dora2');
    await first.getByRole('button', { name: 'Join #default' }).click();
    await waitConnected(first);
    await waitOnline(second, ['dora2', 'eve']);
    assert.deepEqual(errors, []);
  });
  it("a narrow window sees the wide one's cursor, and an edge marker when it moves or writes out of view", async () => {
    const errors = [];
    const wide = await context.newPage();
    const narrow = await context.newPage();
    for (const p of [wide, narrow]) p.on('pageerror', (e) => errors.push(e.message));
    await narrow.setViewportSize({ width: 390, height: 844 });
    await joinAs(wide, gateway.origin, 'wide', 'windows');
    await joinAs(narrow, gateway.origin, 'narrow', 'windows');
    await waitOnline(wide, ['narrow', 'wide']);

    const w = await canvasBox(wide);
    await wide.mouse.move(w.x + 200, w.y + 300);
    await wide.mouse.move(w.x + 250, w.y + 320);
    await narrow.bringToFront(); // animation frames run in the tab in front
    const cursor = narrow.locator('[data-testid="cursor"][data-user="wide"]');
    await waitFor('the wide window\'s cursor on the narrow one', async () => (await cursor.getAttribute('data-x')) === '250', 5000);
    await shot(narrow, '13-narrow-sees-cursor');

    await wide.mouse.move(w.x + 1000, w.y + 320);
    const marker = narrow.locator('[data-testid="edge-marker"][data-user="wide"]');
    await marker.waitFor({ timeout: 5000 });
    assert.equal(await marker.getAttribute('data-count'), '0', 'a marker for the pointer alone');
    await writeAt(wide, 1000, 320, 'out of your view');
    await waitFor('the marker to count the message', async () => (await marker.getAttribute('data-count')) === '1', 5000);
    await shot(narrow, '14-narrow-edge-marker');
    await checkA11y(narrow, 'narrow-cursor-and-marker', logDir);
    assert.deepEqual(errors, []);
    await wide.close();
    await narrow.close();
  });
});
