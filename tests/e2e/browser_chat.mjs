// Chromium chats through a route of the real node (test_real_node_routing.py):
//   node browser_chat.mjs HOST TRAEFIK_ADDR POD_IP...
// Debian's Chromium ($CANVASCHAT_E2E_CHROMIUM names another), driven by playwright-core of
// frontend/, resolves HOST to TRAEFIK_ADDR (--host-resolver-rules), opens http://HOST/ in two
// browser contexts (alice and bob, each with its own storage) and joins one channel with the
// frontend's own page. Bob reloads until the gateway pods' connection gauges
// (POD_IP:9090/metrics, checked as local by the caller) say alice and bob are on different
// pods; then each writes on the canvas and sees the other's message. Prints "chat passed
// between pods through HOST" on success.

import { createRequire } from 'node:module';
import { CHROMIUM_ARGS, waitFor } from '../../frontend/e2e/harness.mjs';
import { joinAs, messageFrom, waitConnected, waitOnline, writeAt } from '../../frontend/e2e/page.mjs';

const [host, traefik, ...podIps] = process.argv.slice(2);
if (!host || !traefik || podIps.length < 2) {
  console.error('usage: node browser_chat.mjs HOST TRAEFIK_ADDR POD_IP POD_IP...');
  process.exit(2);
}
const { chromium } = createRequire(new URL('../../frontend/package.json', import.meta.url))('playwright-core');

async function connectionsPerPod() {
  const counts = [];
  for (const ip of podIps) {
    const text = await (await fetch(`http://${ip}:9090/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const found = /^canvaschat_connections_active (\d+)/m.exec(text);
    if (!found) throw new Error(`no canvaschat_connections_active on ${ip}`);
    counts.push(Number(found[1]));
  }
  return counts;
}

const browser = await chromium.launch({
  executablePath: process.env.CANVASCHAT_E2E_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [...CHROMIUM_ARGS, `--host-resolver-rules=MAP ${host} ${traefik}, EXCLUDE localhost`],
});
try {
  const origin = `http://${host}`;
  const channel = `browser-${Date.now().toString(36)}`;
  const alice = await (await browser.newContext()).newPage();
  const bob = await (await browser.newContext()).newPage();
  await joinAs(alice, origin, 'alice', channel);
  await waitFor('alice connected on one pod', async () => (await connectionsPerPod()).reduce((a, b) => a + b) === 1);
  let counts = [];
  for (let attempt = 1; ; attempt++) {
    if (attempt === 1) await joinAs(bob, origin, 'bob', channel);
    else {
      await bob.reload();
      await waitConnected(bob);
    }
    await waitFor('two connections', async () => (counts = await connectionsPerPod()).reduce((a, b) => a + b) === 2);
    if (counts.every((c) => c <= 1)) break;
    if (attempt === 10) throw new Error(`bob landed on alice's pod 10 times (connections per pod ${counts})`);
  }
  console.log(`alice and bob on different pods (connections per pod ${counts})`);
  await waitOnline(alice, ['alice', 'bob']);
  await waitOnline(bob, ['alice', 'bob']);
  await writeAt(alice, 300, 200, `hello bob via ${host}`);
  await messageFrom(bob, 'alice', `hello bob via ${host}`).waitFor({ timeout: 10_000 });
  await writeAt(bob, 420, 260, 'hello alice');
  await messageFrom(alice, 'bob', 'hello alice').waitFor({ timeout: 10_000 });
  console.log(`chat passed between pods through ${host}`);
} finally {
  await browser.close();
}
