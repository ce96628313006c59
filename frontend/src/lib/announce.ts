// What the screen-reader live region says when messages arrive: each with its sender,
// and a short summary when many arrive at once (recovered history after a reconnect).

interface Spoken {
  userId: string;
  text: string;
}

/** Messages read out in full at once; more are summarised. */
export const ANNOUNCE_MAX = 3;

export function announcement(fresh: readonly Spoken[]): string {
  const said = (m: Spoken) => `${m.userId} says: ${m.text}`;
  if (fresh.length <= ANNOUNCE_MAX) return fresh.map(said).join('. ');
  const last = fresh.slice(-ANNOUNCE_MAX);
  return `${fresh.length} new messages. Latest: ${last.map(said).join('. ')}`;
}
