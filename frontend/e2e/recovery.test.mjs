// Browser suite for history recovery: a page that goes away mid-conversation and comes
// back shows what was sent meanwhile, once; a recovery the gateway cannot complete is
// reported. Chromium pages against two real gateway replicas sharing a real Redis.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkA11y } from './axe.mjs';
import { waitFor } from './harness.mjs';
import { replicaSuite } from './suite.mjs';
import { joinAs, messageFrom, waitConnected, waitOnline, writeAt } from './page.mjs';

const RUN = Date.now().toString(36);


describe('history recovery in a real browser, against two gateway replicas', { timeout: 180_000 }, () => {
  const suite = replicaSuite('recovery');
  const { step, shot, newPage, pageErrors } = suite;

  /** Socket URLs the page opened, and the history frames it received, in order. */
  function watchSockets(page) {
    const seen = { urls: [], histories: [] };
    page.on('websocket', (ws) => {
      seen.urls.push(new URL(ws.url()));
      ws.on('framereceived', ({ payload }) => {
        if (typeof payload === 'string' && payload.startsWith('{"type":"history"')) seen.histories.push(JSON.parse(payload));
      });
    });
    return seen;
  }

  /** Resolves after React has rendered what the last frames changed. */
  const nextFrame = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

  async function countOf(page, user, text) {
    return messageFrom(page, user, text).count();
  }

  step('a page that goes away mid-conversation and comes back shows what was sent meanwhile, once', async () => {
    const channel = `reload-${RUN}`;
    const alice = await newPage('alice');
    await joinAs(alice, suite.gateways[0].origin, 'alice', channel);
    const bob = await newPage('bob');
    const { urls } = watchSockets(bob);
    await joinAs(bob, suite.gateways[1].origin, 'bob', channel);
    await waitOnline(alice, ['alice', 'bob']);
    assert.equal(urls[0]?.searchParams.get('since'), null, 'a newcomer asks for no recovery');

    await writeAt(alice, 200, 150, 'before');
    await messageFrom(bob, 'alice', 'before').waitFor({ timeout: 5000 });

    // Leaving the page and loading it again in the same tab is a reload with a long gap.
    await bob.goto('about:blank');
    await waitOnline(alice, ['alice'], 10_000);
    await writeAt(alice, 320, 260, 'while away 1');
    await writeAt(alice, 460, 380, 'while away 2');
    for (const text of ['while away 1', 'while away 2']) {
      await alice.locator('[data-testid="message"][data-status="sent"]', { hasText: text }).waitFor({ timeout: 5000 });
    }

    await bob.goto(`${suite.gateways[1].origin}/?channel=${channel}`);
    await waitConnected(bob); // the tab kept its name and its place in the history
    const resumed = urls.at(-1);
    assert.match(resumed?.searchParams.get('since') ?? '', /^\d+$/, 'the reload resumes with since');
    assert.ok(resumed?.searchParams.get('epoch'), 'and with the epoch');

    for (const [text, x, y] of [
      ['while away 1', '320', '260'],
      ['while away 2', '460', '380'],
    ]) {
      const m = messageFrom(bob, 'alice', text);
      await m.waitFor({ timeout: 5000 });
      assert.equal(await m.getAttribute('data-x'), x);
      assert.equal(await m.getAttribute('data-y'), y);
    }
    await shot(bob, '01-after-reload');
    await checkA11y(bob, 'recovered-after-reload', suite.logDir);
    // Live messages after the recovery arrive once, and nothing came twice.
    await writeAt(alice, 600, 200, 'after');
    await messageFrom(bob, 'alice', 'after').waitFor({ timeout: 5000 });
    for (const text of ['while away 1', 'while away 2', 'after']) assert.equal(await countOf(bob, 'alice', text), 1, text);
    assert.equal(await bob.getByTestId('missed-notice').count(), 0, 'a complete recovery reports nothing');

    // A newcomer sees what is still on the others' screens, part-way through its fade.
    const dora = await newPage('dora');
    await joinAs(dora, suite.gateways[0].origin, 'dora', channel);
    const late = messageFrom(dora, 'alice', 'after');
    await late.waitFor({ timeout: 2000 });
    const delay = await late.evaluate((el) => parseFloat(getComputedStyle(el).animationDelay));
    assert.ok(delay < 0, `the fade resumes where the others' is (animation-delay ${delay}s)`);
    assert.equal(await dora.getByTestId('missed-notice').count(), 0, 'a newcomer is not told about missed messages');
    await alice.close();
    await bob.close();
    await dora.close();
  });

  step('a recovery the gateway cannot complete shows the notice once, quietly', async () => {
    const channel = `lost-${RUN}`;
    const carol = await newPage('carol');
    const { urls, histories } = watchSockets(carol);
    await joinAs(carol, suite.gateways[0].origin, 'carol', channel);
    // The page saves its place once its history frame is in; replace it only after that.
    const key = `canvaschat.recovery.${channel}`;
    await waitFor('the page to save its place', () => carol.evaluate((k) => sessionStorage.getItem(k) !== null, key));
    // As if the history this tab knew were gone (Redis restarted empty): an unknown epoch.
    await carol.evaluate((k) => sessionStorage.setItem(k, JSON.stringify({ epoch: 'lost-epoch', seen: 7, since: 7 })), key);
    await carol.reload();
    await waitConnected(carol);
    assert.equal(urls.at(-1)?.searchParams.get('epoch'), 'lost-epoch');
    const notice = carol.getByTestId('missed-notice');
    await notice.waitFor({ timeout: 5000 });
    assert.equal(await notice.locator('span').textContent(), 'Some messages may have been missed while you were away.');
    assert.equal(await notice.count(), 1);
    assert.equal(await carol.getByTestId('notice').count(), 0, 'not shown as an error');
    assert.equal(await carol.getByRole('alert').count(), 0, 'not announced as an alert');
    await shot(carol, '02-missed-notice');
    await checkA11y(carol, 'missed-notice', suite.logDir);
    await carol.getByRole('button', { name: 'OK' }).click();
    await notice.waitFor({ state: 'detached' });

    // The next reconnect resumes in the gateway's epoch, and is complete.
    const before = histories.length;
    await carol.reload();
    await waitConnected(carol);
    assert.notEqual(urls.at(-1)?.searchParams.get('epoch'), 'lost-epoch');
    assert.ok(urls.at(-1)?.searchParams.get('epoch'));
    await carol.bringToFront(); // animation frames, for nextFrame, run in the tab in front
    await waitFor('the history frame of the new connection', () => histories.length > before);
    assert.equal(histories.at(-1).recovered, true);
    await nextFrame(carol);
    assert.equal(await notice.count(), 0);
    await carol.close();
  });

  it('raised no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
