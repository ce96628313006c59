// crypto.randomUUID needs a secure context; a phone opening http://<lan-ip> has none,
// but getRandomValues works everywhere.
export function newClientMsgId(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  let out = 'c-';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}
