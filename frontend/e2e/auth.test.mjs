// JWT mode in a real browser: the page learns the mode from /config.json, gets its token from
// the token endpoint the harness serves, chats as the token's sub, keeps the connection past
// the first token's expiry by sending fresh ones, and shows a signed-out state without one.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { artifactsDir, launchBrowser, startGateway, startRedis, startTokenServer, waitFor } from './harness.mjs';
import { waitConnected, waitOnline } from './page.mjs';

const SECRET = 'e2e-hs256-secret-e2e-hs256-secret-0123456789';
// Long enough that the page refreshes it (after 80 % of its life, not before 5 s), short
// enough that the test sees it expire.
const TTL_SECONDS = 8;
const CHANNEL = `jwt-${Date.now().toString(36)}`;

let logDir;
let redis;
let gateway;
let tokens;
let browser;

describe('JWT mode in a real browser', { timeout: 120_000 }, () => {
  before(async () => {
    logDir = artifactsDir();
    redis = await startRedis(logDir);
    const secretFile = join(logDir, 'jwt-secret');
    writeFileSync(secretFile, SECRET);
    tokens = await startTokenServer({ secret: SECRET, origins: () => (gateway ? [gateway.origin] : []), ttlSeconds: TTL_SECONDS });
    gateway = await startGateway('gateway-jwt', {
      redisUrl: redis.url,
      logDir,
      env: {
        CANVASCHAT_AUTH: 'jwt',
        CANVASCHAT_JWT_HMAC_SECRET_FILE: secretFile,
        CANVASCHAT_AUTH_TOKEN_URL: tokens.url,
      },
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.cleanup();
    await gateway?.stop();
    await tokens?.stop();
    await redis?.stop();
  });

  it('chats as the token’s user and outlives the first token', async () => {
    tokens.user = 'alice-jwt';
    const page = await browser.newPage();
    // A uid in the URL changes nothing: the name is the token's.
    await page.goto(`${gateway.origin}/?channel=${CHANNEL}&uid=mallory`);
    await waitConnected(page);
    await waitOnline(page, ['alice-jwt']);
    assert.equal(await page.getByLabel('Your name').count(), 0, 'no name form in JWT mode');
    const first = tokens.requests;
    // Past the first token's exp: still connected, because fresh tokens went out before it.
    await waitFor('a fresh token to be fetched', async () => tokens.requests > first, 15_000);
    await new Promise((r) => setTimeout(r, (TTL_SECONDS + 2) * 1000));
    assert.equal(await page.locator('[data-testid="connection"]').getAttribute('data-status'), 'connected');
    await waitOnline(page, ['alice-jwt']);
    await page.close();
  });

  it('shows a signed-out state when there is no token', async () => {
    tokens.user = null;
    const page = await browser.newPage();
    await page.goto(`${gateway.origin}/?channel=${CHANNEL}`);
    await page.locator('[data-testid="signed-out"]').waitFor({ timeout: 15_000 });
    assert.match(await page.locator('[data-testid="signed-out"]').innerText(), /signed out/i);
    await page.close();
  });

  it('a channel outside the token’s claim is refused with a clear message', async () => {
    tokens.user = 'bob-jwt';
    tokens.channels = ['lobby'];
    const page = await browser.newPage();
    await page.goto(`${gateway.origin}/?channel=${CHANNEL}`);
    const status = page.locator('[data-testid="connection"][data-status="failed"]');
    await status.waitFor({ timeout: 15_000 });
    assert.match(await page.locator('body').innerText(), /Signed out of this channel/);
    tokens.channels = undefined;
    await page.close();
  });
});
