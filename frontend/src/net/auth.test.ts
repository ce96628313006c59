import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  decodeToken,
  encodeAuth,
  fetchToken,
  loadPageConfig,
  MIN_REFRESH_MS,
  refreshDelayMs,
  SignedOutError,
  TokenKeeper,
  type FetchLike,
} from './auth';

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function jwt(claims: Record<string, unknown>): string {
  return `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.c2ln`;
}

function answer(status: number, body: string): FetchLike {
  return () => Promise.resolve(new Response(body, { status }));
}

describe('page config', () => {
  it('reads JWT mode with its token URL', async () => {
    const config = await loadPageConfig(answer(200, '{"auth":"jwt","tokenUrl":"/auth/token"}'));
    expect(config).toEqual({ auth: 'jwt', tokenUrl: '/auth/token' });
  });

  it('is anonymous without a config (an older gateway) or on junk', async () => {
    expect(await loadPageConfig(answer(404, 'not found'))).toEqual({ auth: 'anonymous' });
    expect(await loadPageConfig(answer(200, 'junk'))).toEqual({ auth: 'anonymous' });
    expect(await loadPageConfig(() => Promise.reject(new Error('offline')))).toEqual({ auth: 'anonymous' });
    expect(await loadPageConfig(answer(200, '{"auth":"anonymous"}'))).toEqual({ auth: 'anonymous' });
  });
});

describe('tokens', () => {
  it('reads sub and exp', () => {
    const token = jwt({ sub: 'alice', exp: 2000 });
    expect(decodeToken(token)).toEqual({ token, sub: 'alice', exp: 2000 });
    expect(decodeToken('not-a-jwt')).toBeNull();
    expect(decodeToken(jwt({ sub: 'alice' }))).toBeNull();
    expect(decodeToken(jwt({ exp: 5 }))).toBeNull();
  });

  it('is fetched as JSON or text; 401 means signed out', async () => {
    const token = jwt({ sub: 'bob', exp: 99 });
    expect((await fetchToken('/t', answer(200, JSON.stringify({ token })))).sub).toBe('bob');
    expect((await fetchToken('/t', answer(200, `${token}\n`))).exp).toBe(99);
    await expect(fetchToken('/t', answer(401, ''))).rejects.toBeInstanceOf(SignedOutError);
    await expect(fetchToken('/t', answer(200, '{"token":7}'))).rejects.toBeInstanceOf(SignedOutError);
    await expect(fetchToken('/t', answer(500, ''))).rejects.not.toBeInstanceOf(SignedOutError);
  });

  it('is sent as an auth frame', () => {
    expect(JSON.parse(encodeAuth('a.b.c'))).toEqual({ type: 'auth', token: 'a.b.c' });
  });

  it('is refreshed well before exp, never in a tight loop', () => {
    const now = 1_000_000;
    // An hour left: a minute before exp.
    expect(refreshDelayMs(now / 1000 + 3600, now)).toBe(3_540_000);
    // Two minutes left: after 80 % of it.
    expect(refreshDelayMs(now / 1000 + 120, now)).toBe(96_000);
    // 20 s left: after 16 s.
    expect(refreshDelayMs(now / 1000 + 20, now)).toBe(16_000);
    expect(refreshDelayMs(now / 1000 - 10, now)).toBe(MIN_REFRESH_MS);
  });
});

describe('TokenKeeper', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('hands out fresh tokens before exp and reports signing out', async () => {
    let now = 0;
    const responses = [
      jwt({ sub: 'alice', exp: 20 }),
      jwt({ sub: 'alice', exp: 40 }),
      null, // signed out
    ];
    const fetchFn: FetchLike = () => {
      const next = responses.shift();
      return Promise.resolve(next === null || next === undefined ? new Response('', { status: 401 }) : new Response(next));
    };
    const fresh: string[] = [];
    const signedOut: string[] = [];
    const keeper = new TokenKeeper({
      url: '/token',
      fetch: fetchFn,
      now: () => now,
      onToken: (t) => fresh.push(t.token),
      onSignedOut: (reason) => signedOut.push(reason),
    });
    const first = await keeper.start();
    expect(first.sub).toBe('alice');
    expect(keeper.current()).toBe(first.token);
    now = 16_000;
    await vi.advanceTimersByTimeAsync(16_000);
    expect(fresh).toHaveLength(1);
    expect(keeper.current()).toBe(fresh[0]);
    now = 32_000;
    await vi.advanceTimersByTimeAsync(20_000);
    expect(signedOut).toHaveLength(1);
    expect(signedOut[0]).toMatch(/signed out/);
    keeper.stop();
  });

  it('a token for someone else is a sign-out, not a silent switch', async () => {
    const responses = [jwt({ sub: 'alice', exp: 20 }), jwt({ sub: 'mallory', exp: 40 })];
    const signedOut: string[] = [];
    const keeper = new TokenKeeper({
      url: '/token',
      fetch: () => Promise.resolve(new Response(responses.shift() ?? '')),
      now: () => 0,
      onToken: () => {
        throw new Error('no token for another user may be used');
      },
      onSignedOut: (reason) => signedOut.push(reason),
    });
    await keeper.start();
    await vi.advanceTimersByTimeAsync(16_000);
    expect(signedOut[0]).toMatch(/mallory/);
    keeper.stop();
  });
});
