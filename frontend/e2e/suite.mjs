// The fixture every browser suite against two gateway replicas shares: a real Redis, the
// gateways and Chromium started before and stopped after the suite, pages whose errors and
// console are recorded, and a screenshot of every open page when a test fails.

import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { artifactsDir, launchBrowser, startGateway, startRedis } from './harness.mjs';

/**
 * Registers the suite's before/after hooks (call it inside `describe`). `prefix` names the
 * gateways and screenshots; `env` is extra gateway environment; `replicas` how many gateways
 * start before the tests (more can join with `addReplica`).
 */
export function replicaSuite(prefix, { env = {}, replicas = 2 } = {}) {
  const name = (n) => (prefix ? `${prefix}-gateway-${n}` : `gateway-${n}`);
  const suite = {
    logDir: undefined,
    redis: undefined,
    gateways: [],
    browser: undefined,
    pageErrors: [],

    shot(page, name) {
      return page.screenshot({ path: join(suite.logDir, prefix ? `${prefix}-${name}.png` : `${name}.png`) });
    },

    /** A test that, when it fails, saves a screenshot of every open page before failing. */
    step(title, body) {
      const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
      it(title, async () => {
        try {
          await body();
        } catch (e) {
          for (const [i, page] of (suite.browser?.pages() ?? []).entries()) {
            await suite.shot(page, `failed-${slug}-${i}`).catch(() => {});
          }
          throw e;
        }
      });
    },

    /** Starts one more gateway on the suite's Redis, as the autoscaler adds a replica. */
    async addReplica() {
      const gateway = await startGateway(name(suite.gateways.length + 1), {
        redisUrl: suite.redis.url,
        logDir: suite.logDir,
        env,
      });
      suite.gateways.push(gateway);
      return gateway;
    },

    /** A page whose errors are collected and whose console goes to the artifacts; `phone`
     * gives it a phone-sized touch screen with `page.tapAt(x, y)`. */
    async newPage(label, { phone = false } = {}) {
      const page = await suite.browser.newPage();
      page.on('pageerror', (e) => suite.pageErrors.push(`${label}: ${e.message}`));
      page.on('console', (m) =>
        appendFileSync(join(suite.logDir, 'browser-console.log'), `[${label}] ${m.type()}: ${m.text()}\n`),
      );
      if (phone) {
        await page.setViewportSize({ width: 390, height: 844 });
        const cdp = await page.context().newCDPSession(page);
        await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 5 });
        page.tapAt = async (x, y) => {
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [{ x, y, id: 0 }] });
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
        };
      }
      return page;
    },
  };

  before(async () => {
    suite.logDir = artifactsDir();
    suite.redis = await startRedis(suite.logDir);
    for (let i = 0; i < replicas; i += 1) await suite.addReplica();
    suite.browser = await launchBrowser();
  });

  after(async () => {
    await suite.browser?.cleanup();
    for (const g of suite.gateways) await g.stop();
    await suite.redis?.stop();
    suite.redis?.cleanup();
  });

  return suite;
}
