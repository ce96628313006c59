// User ids and channel names share one rule on the gateway: 1-64 chars of [A-Za-z0-9_.-].

export const NAME_MAX = 64;
export const DEFAULT_CHANNEL = 'default';
const ALLOWED = /^[A-Za-z0-9_.-]+$/;

export type NameProblem = 'empty' | 'too_long' | 'bad_chars';

export function validateName(name: string): NameProblem | null {
  if (name.length === 0) return 'empty';
  if (name.length > NAME_MAX) return 'too_long';
  if (!ALLOWED.test(name)) return 'bad_chars';
  return null;
}

export function describeNameProblem(problem: NameProblem, what: 'name' | 'channel'): string {
  switch (problem) {
    case 'empty':
      return `Enter a ${what}.`;
    case 'too_long':
      return `A ${what} is at most ${NAME_MAX} characters.`;
    case 'bad_chars':
      return `Use only letters, digits, "_", "." and "-" (no spaces).`;
  }
}

/** Characters outside the allowed set, for a precise hint while typing. */
export function invalidChars(name: string): string[] {
  const bad = new Set<string>();
  for (const ch of name) {
    if (!ALLOWED.test(ch)) bad.add(ch);
  }
  return [...bad];
}

export interface ChannelChoice {
  channel: string;
  /** The raw `?channel=` value when it was present but invalid. */
  rejected: string | null;
}

export function channelFromSearch(search: string): ChannelChoice {
  const raw = new URLSearchParams(search).get('channel');
  if (raw === null || raw === '') return { channel: DEFAULT_CHANNEL, rejected: null };
  if (validateName(raw) !== null) return { channel: DEFAULT_CHANNEL, rejected: raw };
  return { channel: raw, rejected: null };
}

export function shareLink(location: { origin: string; pathname: string }, channel: string): string {
  const query = new URLSearchParams({ channel });
  return `${location.origin}${location.pathname}?${query.toString()}`;
}

/** 32-bit FNV-1a over UTF-16 code units: small, stable across browsers and sessions. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * A stable colour per user id. OKLCH keeps the perceived lightness equal across hues, so
 * every colour has the same contrast against the light canvas (about 5:1 or better),
 * where an HSL yellow would be unreadable next to an HSL blue.
 */
export function userColour(userId: string): string {
  const h = hashString(userId);
  const hue = h % 360;
  const lightness = 44 + ((h >>> 9) % 7);
  const chroma = 0.12 + ((h >>> 17) % 6) / 100;
  return `oklch(${lightness}% ${chroma.toFixed(2)} ${hue})`;
}

export const NAME_STORAGE_KEY = 'canvaschat.name';

export function loadName(storage: Pick<Storage, 'getItem'> | null): string | null {
  try {
    const v = storage?.getItem(NAME_STORAGE_KEY) ?? null;
    return v !== null && validateName(v) === null ? v : null;
  } catch {
    return null;
  }
}

export function saveName(storage: Pick<Storage, 'setItem'> | null, name: string): void {
  try {
    storage?.setItem(NAME_STORAGE_KEY, name);
  } catch {
    // Private mode or a full quota: the name still works for this visit.
  }
}

export interface StartingName {
  /** The name this tab already joined with (it survives a reload): join at once. */
  joined: string | null;
  /** Otherwise the remembered name, offered in the name form. */
  suggestion: string;
}

/**
 * The remembered name (localStorage) is only a suggestion in a new tab, so two windows of
 * one browser can be two people; a tab that already joined (sessionStorage) goes straight in.
 */
export function startingName(
  session: Pick<Storage, 'getItem'> | null,
  local: Pick<Storage, 'getItem'> | null,
): StartingName {
  const joined = loadName(session);
  return { joined, suggestion: joined ?? loadName(local) ?? '' };
}
