// Browser suite for a real rebalance: a page on a loaded gateway replica, a second replica
// started behind the same address, and the loaded one moving the page's connection there
// (close 4000) by itself. Nobody should notice: no state change on the page, nothing lost
// or doubled, the same people online, chat going on. Chromium, real gateways, real Redis,
// and a least-connections balancer in front as the Service would be.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBalancer, waitFor } from './harness.mjs';
import { replicaSuite } from './suite.mjs';
import { connection, joinAs, messageFrom, waitConnected, waitOnline, writeAt } from './page.mjs';

const RUN = Date.now().toString(36);
// Above the gateway's floor of 10 so the loaded replica sheds: the page, the peer and these.
const FILLER_CHANNELS = 2;
const FILLERS_PER_CHANNEL = 11;

if (typeof WebSocket !== 'function') {
  throw new Error('this suite needs the WebSocket global: run node with --experimental-websocket (Node 20)');
}

/** `promise`, or a failure naming `what` after `ms`. */
async function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A plain WebSocket client (no page): keeps every frame it receives and, like the page,
 * reconnects at once when the gateway moves it (4000).
 */
function plainClient(url) {
  const client = { frames: [], opened: 0, closes: [], stopped: false, socket: null };
  const open = () => {
    const socket = new WebSocket(url);
    client.socket = socket;
    socket.onopen = () => {
      client.opened += 1;
    };
    socket.onmessage = (ev) => client.frames.push(JSON.parse(ev.data));
    socket.onclose = (ev) => {
      client.closes.push(ev.code);
      if (!client.stopped && ev.code === 4000) open();
    };
  };
  open();
  client.send = (frame) => client.socket.send(JSON.stringify(frame));
  client.stop = () => {
    client.stopped = true;
    client.socket.close(1000);
  };
  return client;
}

/**
 * Records in the page, on every DOM change, anything a person could see of a move: a
 * connection state other than "connected", an error, alert or missed-messages notice, a
 * failed message, any other online list, and every message element added (to count
 * appearances, even of one that has since faded).
 */
function installRecorder() {
  const problems = new Set();
  const lists = [];
  const added = [];
  const problemSelectors = [
    '[data-testid="notice"]',
    '[data-testid="missed-notice"]',
    '[data-testid="signed-out"]',
    '[role="alert"]',
    '[data-testid="message"][data-status="failed"]',
  ];
  const check = () => {
    const conn = document.querySelector('[data-testid="connection"]');
    const status = conn?.getAttribute('data-status');
    if (status !== 'connected') problems.add(`connection ${status}: ${conn?.textContent}`);
    for (const selector of problemSelectors) {
      const el = document.querySelector(selector);
      if (el !== null) problems.add(`${selector}: ${el.textContent}`);
    }
    if (/reconnecting|connection lost/i.test(document.body.textContent ?? '')) problems.add('"reconnecting" text shown');
    const list = JSON.stringify(
      [...document.querySelectorAll('[data-testid="online-list"] li')].map((li) => li.getAttribute('data-user')),
    );
    if (list !== lists.at(-1)) lists.push(list);
  };
  new MutationObserver((records) => {
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (!(node instanceof Element)) continue;
        const messages = node.matches('[data-testid="message"]') ? [node] : node.querySelectorAll('[data-testid="message"]');
        for (const m of messages) added.push(`${m.getAttribute('data-user')}: ${m.querySelector('.msg__text')?.textContent}`);
      }
    }
    check();
  }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  check();
  window.__recorded = () => ({ problems: [...problems], lists, added });
}

/** Counts the close codes of the page's sockets (set before the page's own scripts run). */
function recordSocketCloses() {
  const Native = window.WebSocket;
  window.__closes = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('close', (ev) => window.__closes.push({ code: ev.code, reason: ev.reason }));
    }
  };
}

describe('a real rebalance moves a page to a new replica, and nobody notices', { timeout: 60_000 }, () => {
  const suite = replicaSuite('rebalance', {
    replicas: 1,
    env: { CANVASCHAT_REBALANCE: 'true', CANVASCHAT_REBALANCE_TOLERANCE: '0.2', CANVASCHAT_REBALANCE_RATE: '5' },
  });
  const { step, shot, newPage, pageErrors } = suite;
  let balancer;
  const clients = [];

  before(async () => {
    balancer = await startBalancer();
    balancer.add(suite.gateways[0]);
  });

  after(async () => {
    for (const c of clients) c.stop();
    await balancer?.stop();
  });

  const chatUrl = (uid, channel) => `${balancer.origin.replace('http:', 'ws:')}/api/chat?uid=${uid}&channel=${channel}`;
  const recorded = (page) => page.evaluate(() => window.__recorded());

  step('the loaded replica moves the page (4000) to the new one: no visible change, nothing lost or doubled', async () => {
    const channel = `move-${RUN}`;
    const [a] = suite.gateways;
    const moved = await newPage('moved');
    await moved.addInitScript(recordSocketCloses);
    // The page joins first, so it is the oldest connection of its channel: the first to move.
    await joinAs(moved, balancer.origin, 'mover', channel);
    const peer = plainClient(chatUrl('peer', channel));
    clients.push(peer);
    for (let c = 0; c < FILLER_CHANNELS; c += 1) {
      for (let i = 0; i < FILLERS_PER_CHANNEL; i += 1) clients.push(plainClient(chatUrl(`filler-${c}-${i}`, `fill-${c}-${RUN}`)));
    }
    const total = clients.length + 1;
    await waitOnline(moved, ['mover', 'peer']);
    await waitFor(`${total} connections on ${a.name}`, async () => (await a.metric('canvaschat_connections_active')) === total);
    await moved.evaluate(installRecorder);
    assert.deepEqual((await recorded(moved)).problems, []);

    // The autoscaler adds a replica; the balancer (the Service) gets its endpoint.
    const reconnect = balancer.hold((request) => request.startsWith('GET /api/chat?uid=mover&'));
    const scaledAt = Date.now();
    const b = await suite.addReplica();
    balancer.add(b);

    // The page's reconnect is held at the balancer until the peer has written, so a message
    // is sent while the page is between sockets.
    const request = await within(30_000, 'the page to reconnect after a rebalance', reconnect.arrived);
    const movedAfterMs = Date.now() - scaledAt;
    assert.match(request, /[?&]since=\d+&epoch=/, 'the page resumes with since and epoch');
    assert.deepEqual(await moved.evaluate(() => window.__closes), [{ code: 4000, reason: 'rebalance' }]);
    peer.send({ type: 'chat', payload: 'during the move', position: { x: 420, y: 260 }, client_msg_id: `peer-during-${RUN}` });
    await waitFor('the ack of the message sent during the move', () =>
      peer.frames.some((f) => f.type === 'ack' && f.client_msg_id === `peer-during-${RUN}`),
    );
    reconnect.release();

    await messageFrom(moved, 'peer', 'during the move').waitFor({ timeout: 5000 });
    await waitConnected(moved);
    assert.equal(balancer.routed.findLast((r) => r.request.includes('uid=mover&'))?.backend, b.name, 'the page landed on the new replica');
    peer.send({ type: 'chat', payload: 'after the move', position: { x: 640, y: 360 }, client_msg_id: `peer-after-${RUN}` });
    await messageFrom(moved, 'peer', 'after the move').waitFor({ timeout: 5000 });
    await writeAt(moved, 300, 200, 'mover still here');
    await moved.locator('[data-testid="message"][data-status="sent"]', { hasText: 'mover still here' }).waitFor({ timeout: 5000 });
    await waitFor('the peer to get the moved page’s message', () =>
      peer.frames.some((f) => f.type === 'chat' && f.user_id === 'mover' && f.payload === 'mover still here'),
    );

    // The rebalance goes on until the first replica is within its share; the page stays put.
    await waitFor(
      'the first replica to be within 20 % of the mean',
      async () => {
        const onA = await a.metric('canvaschat_connections_active');
        return onA + (await b.metric('canvaschat_connections_active')) === total && onA <= 1.2 * (total / 2);
      },
      30_000,
      250,
    );
    const shedA = await a.metric('canvaschat_rebalance_shed_total');
    assert.ok(shedA >= 1, `${a.name} shed by rebalancing (${shedA})`);
    assert.equal(await b.metric('canvaschat_rebalance_shed_total'), 0, 'the new replica shed nothing');
    const onB = await b.metric('canvaschat_connections_active');
    console.log(
      `page moved ${movedAfterMs} ms after the second replica was started; balanced after ${Date.now() - scaledAt} ms; ` +
        `${a.name} shed ${shedA}, ${b.name} holds ${onB} of ${total}`,
    );

    const seen = await recorded(moved);
    assert.deepEqual(seen.problems, [], 'nothing of the move was visible');
    assert.deepEqual(seen.lists, [JSON.stringify(['mover', 'peer'])], 'the online list never changed');
    for (const text of ['during the move', 'after the move']) {
      assert.equal(seen.added.filter((m) => m === `peer: ${text}`).length, 1, `"${text}" appeared once`);
    }
    assert.equal(await connection(moved).getAttribute('data-status'), 'connected');
    assert.deepEqual(await moved.evaluate(() => window.__closes), [{ code: 4000, reason: 'rebalance' }], 'moved once');
    await shot(moved, '01-after-rebalance');
    await moved.close();
  });

  it('raised no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
