// JWT mode (docs/gateway.md, Authentication): the page asks the gateway how users are
// identified (GET /config.json), fetches a token from the same-site token URL, sends it as the
// first frame of every connection and a fresh one before it expires.

/** What `/config.json` says; a gateway without it (404) is anonymous. */
export type PageConfig = { auth: 'anonymous' } | { auth: 'jwt'; tokenUrl: string | null };

/** A token with the two claims the page needs: who it names and when it expires. */
export interface Token {
  token: string;
  sub: string;
  /** Unix seconds. */
  exp: number;
}

/** Close codes of a refused token (4401) or a channel outside its claim (4403). */
export const AUTH_CLOSE_CODES: ReadonlySet<number> = new Set([4401, 4403]);
/** A token is refreshed this long before `exp` (long-lived tokens)… */
export const REFRESH_LEAD_MS = 60_000;
/** …or once this share of its remaining life has passed, whichever is later. */
export const REFRESH_SHARE = 0.8;
/** Never refresh more often than this, whatever the token says. */
export const MIN_REFRESH_MS = 5_000;

export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

/** The token endpoint says nobody is signed in (401/403), or the token is unusable. */
export class SignedOutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SignedOutError';
  }
}

export async function loadPageConfig(fetchFn: FetchLike): Promise<PageConfig> {
  let response: Response;
  try {
    response = await fetchFn('/config.json', { cache: 'no-store' });
  } catch {
    return { auth: 'anonymous' };
  }
  if (!response.ok) return { auth: 'anonymous' };
  const body: unknown = await response.json().catch(() => null);
  if (typeof body === 'object' && body !== null && (body as { auth?: unknown }).auth === 'jwt') {
    const url = (body as { tokenUrl?: unknown }).tokenUrl;
    return { auth: 'jwt', tokenUrl: typeof url === 'string' && url !== '' ? url : null };
  }
  return { auth: 'anonymous' };
}

function base64UrlDecode(part: string): string | null {
  try {
    const padded = part.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (part.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  } catch {
    return null;
  }
}

/** Reads `sub` and `exp` without verifying anything: the gateway verifies. */
export function decodeToken(token: string): Token | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const json = base64UrlDecode(parts[1] ?? '');
  if (json === null) return null;
  let claims: unknown;
  try {
    claims = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof claims !== 'object' || claims === null) return null;
  const { sub, exp } = claims as { sub?: unknown; exp?: unknown };
  if (typeof sub !== 'string' || typeof exp !== 'number' || !Number.isFinite(exp)) return null;
  return { token, sub, exp };
}

/** GETs a token: JSON `{"token":"..."}` or the bare token as text. */
export async function fetchToken(url: string, fetchFn: FetchLike): Promise<Token> {
  const response = await fetchFn(url, { credentials: 'same-origin', cache: 'no-store' });
  if (response.status === 401 || response.status === 403) {
    throw new SignedOutError('You are signed out. Sign in, then reload this page.');
  }
  if (!response.ok) throw new Error(`The token service answered ${response.status}.`);
  const text = (await response.text()).trim();
  let raw = text;
  if (text.startsWith('{')) {
    try {
      const body = JSON.parse(text) as { token?: unknown };
      raw = typeof body.token === 'string' ? body.token : '';
    } catch {
      raw = '';
    }
  }
  const token = decodeToken(raw);
  if (token === null) throw new SignedOutError('The sign-in service returned no usable token.');
  return token;
}

/** Milliseconds from `nowMs` until the token should be replaced. */
export function refreshDelayMs(exp: number, nowMs: number): number {
  const left = exp * 1000 - nowMs;
  const delay = Math.max(left - REFRESH_LEAD_MS, left * REFRESH_SHARE);
  return Math.max(MIN_REFRESH_MS, Math.floor(delay));
}

export function encodeAuth(token: string): string {
  return JSON.stringify({ type: 'auth', token });
}

export interface TokenKeeperOptions {
  url: string;
  fetch: FetchLike;
  /** Every token after the first: send it on the open connection. */
  onToken: (token: Token) => void;
  /** The user is signed out, or tokens can no longer be had. */
  onSignedOut: (reason: string) => void;
  now?: () => number;
}

/** Holds the current token and replaces it before it expires. */
export class TokenKeeper {
  private readonly opts: TokenKeeperOptions;
  private readonly now: () => number;
  private token: Token | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(opts: TokenKeeperOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  /** Fetches the first token; rejects with SignedOutError when nobody is signed in. */
  async start(): Promise<Token> {
    const token = await fetchToken(this.opts.url, this.opts.fetch);
    this.token = token;
    this.schedule();
    return token;
  }

  current(): string | null {
    return this.token?.token ?? null;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped || this.token === null) return;
    this.timer = setTimeout(() => void this.refresh(), refreshDelayMs(this.token.exp, this.now()));
  }

  private async refresh(): Promise<void> {
    if (this.stopped || this.token === null) return;
    const previous = this.token;
    try {
      const token = await fetchToken(this.opts.url, this.opts.fetch);
      if (this.stopped) return;
      if (token.sub !== previous.sub) {
        this.opts.onSignedOut(`You are now signed in as ${token.sub}; reload to chat as them.`);
        return;
      }
      this.token = token;
      this.opts.onToken(token);
      this.schedule();
    } catch (error) {
      if (this.stopped) return;
      if (error instanceof SignedOutError) {
        this.opts.onSignedOut(error.message);
        return;
      }
      // A passing failure: try again until the token runs out; the gateway closes at exp.
      if (previous.exp * 1000 > this.now()) this.schedule();
      else this.opts.onSignedOut('Your session expired and could not be renewed. Reload to sign in again.');
    }
  }
}
