/**
 * The per-minute rate limits count in windows aligned to the clock's minutes. A test that
 * makes a few calls and expects the last to be over the limit must not straddle a minute:
 * the calls would fall in two windows and the last would be admitted. Waits, when less
 * than `marginMs` is left in the current minute, until the next one has begun.
 */
export async function awayFromMinuteEdge(marginMs = 10_000): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < marginMs) await new Promise((r) => setTimeout(r, left + 50));
}
