// Starts the real services the browser suite runs against: one redis-server and
// gateway replicas built from this repo, all on free 127.0.0.1 ports, plus Chromium.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const FRONTEND_DIR = resolve(here, '..');
export const REPO_ROOT = resolve(FRONTEND_DIR, '..');
export const ARTIFACTS_DIR = join(REPO_ROOT, 'tests', 'artifacts', 'frontend');

export function gatewayBinary() {
  if (process.env.CANVASCHAT_GATEWAY_BIN) return process.env.CANVASCHAT_GATEWAY_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache', 'canvaschat', 'target');
  return join(target, 'release', 'canvaschat-gateway');
}

export async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` resolves truthy, failing with `what` after `timeoutMs`. */
export async function waitFor(what, check, timeoutMs = 15_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** A child process whose output goes to a log file in the artifacts directory. */
class Service {
  constructor(name, command, args, env, logDir) {
    this.name = name;
    this.command = command;
    this.args = args;
    this.env = env;
    this.logPath = join(logDir, `${name}.log`);
    this.log = createWriteStream(this.logPath, { flags: 'a' });
    this.child = null;
  }

  start() {
    this.log.write(`--- start ${new Date().toISOString()}: ${this.command} ${this.args.join(' ')}\n`);
    const env = { ...process.env, ...this.env };
    // An undefined value means "unset", whatever the caller's environment says.
    for (const [k, v] of Object.entries(this.env)) if (v === undefined) delete env[k];
    const child = spawn(this.command, this.args, {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(this.log, { end: false });
    child.stderr.pipe(this.log, { end: false });
    this.exited = once(child, 'exit');
    this.child = child;
    child.on('exit', (code, signal) => {
      this.log.write(`--- exit code=${code} signal=${signal}\n`);
      if (this.child === child) this.child = null;
    });
  }

  get running() {
    return this.child !== null;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5000) {
    const child = this.child;
    if (child === null) return;
    const exited = this.exited;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

export async function startRedis(logDir) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'canvaschat-e2e-redis-'));
  const redis = new Service(
    'redis',
    '/usr/bin/redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    {},
    logDir,
  );
  redis.start();
  redis.url = `redis://127.0.0.1:${port}/0`;
  redis.cleanup = () => rmSync(dir, { recursive: true, force: true });
  await waitFor(
    'redis to accept connections',
    async () => {
      if (!redis.running) throw new Error(`redis-server exited, see ${redis.logPath}`);
      return canConnect(port);
    },
    10_000,
  );
  return redis;
}

async function canConnect(port) {
  const { connect } = await import('node:net');
  return new Promise((resolveConnect) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolveConnect(true);
    });
    socket.once('error', () => resolveConnect(false));
  });
}

/** A gateway replica; without `redisUrl` it runs its embedded single-replica broker. */
export async function startGateway(name, { redisUrl, logDir, env = {} }) {
  const bin = gatewayBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `gateway binary not found at ${bin}; build it with ` +
        '`cargo build --release -p canvaschat-gateway` or set CANVASCHAT_GATEWAY_BIN',
    );
  }
  const port = await freePort();
  const adminPort = await freePort();
  const gateway = new Service(
    name,
    bin,
    [],
    {
      CANVASCHAT_LISTEN: `127.0.0.1:${port}`,
      CANVASCHAT_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      CANVASCHAT_REDIS_URL: redisUrl,
      CANVASCHAT_STATIC_DIR: join(FRONTEND_DIR, 'dist'),
      CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS: '1',
      CANVASCHAT_PRESENCE_TTL_SECONDS: '4',
      CANVASCHAT_SHUTDOWN_GRACE_SECONDS: '1',
      RUST_LOG: process.env.RUST_LOG ?? 'info',
      ...env,
    },
    logDir,
  );
  gateway.port = port;
  gateway.origin = `http://127.0.0.1:${port}`;
  gateway.adminOrigin = `http://127.0.0.1:${adminPort}`;
  /** The value of an unlabelled metric on the admin listener's /metrics. */
  gateway.metric = async (metric) => {
    const text = await (await fetch(`${gateway.adminOrigin}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${metric} `));
    if (line === undefined) throw new Error(`${name} has no metric ${metric}`);
    return Number(line.slice(metric.length + 1));
  };
  gateway.startAndWait = async () => {
    gateway.start();
    await waitFor(
      `${name} to be ready on ${gateway.origin}/ready`,
      async () => {
        if (!gateway.running) throw new Error(`${name} exited, see ${gateway.logPath}`);
        const res = await fetch(`${gateway.origin}/ready`);
        return res.status === 200;
      },
      20_000,
      200,
    );
  };
  await gateway.startAndWait();
  return gateway;
}

/** Chromium's flags for every browser test here (also the real-node routing test's). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Debian's Chromium with a fresh profile. Each gateway is its own origin, so pages on
 * different replicas keep separate localStorage (and so separate names) in one profile.
 */
export async function launchBrowser() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'canvaschat-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  context.cleanup = async () => {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return context;
}

export function artifactsDir() {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return ARTIFACTS_DIR;
}

/**
 * The token endpoint of JWT mode, as an identity provider's backend would serve it: GET
 * answers `{"token":...}` (HS256 signed with `secret`, for `user`, valid `ttlSeconds`) or 401
 * while `user` is null. Each gateway origin is allowed by CORS (the page fetches it from there).
 */
export async function startTokenServer({ secret, origins, ttlSeconds }) {
  const { createHmac } = await import('node:crypto');
  const { createServer: createHttpServer } = await import('node:http');
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const state = { user: null, channels: undefined, requests: 0 };
  const mint = () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: state.user, iat: now, exp: now + ttlSeconds };
    if (state.channels !== undefined) claims.channels = state.channels;
    const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
  };
  const server = createHttpServer((req, res) => {
    state.requests += 1;
    const origin = req.headers.origin;
    const headers = { 'content-type': 'application/json', 'cache-control': 'no-store' };
    if (origin !== undefined && origins().includes(origin)) headers['access-control-allow-origin'] = origin;
    if (state.user === null) {
      res.writeHead(401, headers).end('{"error":"signed out"}');
      return;
    }
    res.writeHead(200, headers).end(JSON.stringify({ token: mint() }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.url = `http://127.0.0.1:${server.address().port}/token`;
  state.stop = () => new Promise((r) => server.close(r));
  return state;
}

/**
 * A TCP load balancer in front of gateway replicas, as a Service or Ingress is: every client
 * connection goes to the backend holding the fewest open connections through it (least
 * connections, so a connection that moves lands on the replica just added, every run). The
 * first request of each connection is read before choosing, so a test can `hold` a chosen
 * one (e.g. a page's reconnect) until it releases it; `routed` lists where each went.
 */
export async function startBalancer() {
  const { connect, createServer: createTcpServer } = await import('node:net');
  const backends = [];
  const sockets = new Set();
  const waiting = [];
  const everyHold = [];
  const routed = [];

  const pick = () => backends.reduce((best, b) => (best === null || b.open < best.open ? b : best), null);

  async function route(client, head) {
    const request = head.toString('latin1', 0, head.indexOf('\r\n'));
    const hold = waiting.find((h) => h.matches(request));
    if (hold !== undefined) {
      waiting.splice(waiting.indexOf(hold), 1);
      hold.arrived(request);
      await hold.released;
    }
    const backend = pick();
    if (backend === null || client.destroyed) {
      client.destroy();
      return;
    }
    routed.push({ request, backend: backend.name });
    backend.open += 1;
    const upstream = connect(backend.port, '127.0.0.1');
    sockets.add(upstream);
    let counted = true;
    const done = () => {
      if (counted) backend.open -= 1;
      counted = false;
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', done);
    upstream.on('close', done);
    client.on('close', done);
    upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  const server = createTcpServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      if (head.indexOf('\r\n') < 0 && head.length < 16_384) return;
      client.off('data', onData);
      client.pause();
      route(client, head).catch(() => client.destroy());
    };
    client.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;

  return {
    origin: `http://127.0.0.1:${port}`,
    routed,
    /** Sends new connections to `gateway` too (the Service gained an endpoint). */
    add(gateway) {
      backends.push({ name: gateway.name, port: gateway.port, open: 0 });
    },
    /**
     * Holds the next connection whose request line `matches` until `release()`; `arrived`
     * resolves with that request line once it comes.
     */
    hold(matches) {
      const h = { matches };
      const arrived = new Promise((r) => {
        h.arrived = r;
      });
      h.released = new Promise((r) => {
        h.release = r;
      });
      waiting.push(h);
      everyHold.push(h);
      return { arrived, release: h.release };
    },
    async stop() {
      for (const h of everyHold) {
        h.arrived(null);
        h.release();
      }
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
