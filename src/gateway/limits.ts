/**
 * Per-key limits: requests per minute (fixed one-minute windows aligned to the clock, so
 * `x-rate-limit-reset-at-utc` is the start of the next minute) and concurrent requests.
 *
 * `Limiter` is the interface; `LocalLimiter` holds the counts in this process (the
 * embedded default, one gateway). A multi-gateway deployment puts them in Redis behind
 * the same interface.
 */

export interface RateDecision {
  allowed: boolean;
  /** Requests left in this window after this one (0 when refused). */
  remaining: number;
  /** When the window resets (epoch ms). */
  resetAtMs: number;
}

export interface Limiter {
  /** Counts one request for `key` against `rpm`; refused requests are not counted. */
  hit(key: string, rpm: number, nowMs?: number): Promise<RateDecision>;
  /** Takes one concurrency slot; returns a release function, or null when all are taken. */
  acquire(key: string, limit: number): Promise<(() => void) | null>;
  /** Slots in use for `key` (for tests and metrics). */
  inFlight(key: string): Promise<number>;
}

const WINDOW_MS = 60_000;

export class LocalLimiter implements Limiter {
  private readonly windows = new Map<string, { start: number; count: number }>();
  private readonly slots = new Map<string, number>();

  async hit(key: string, rpm: number, nowMs = Date.now()): Promise<RateDecision> {
    const start = nowMs - (nowMs % WINDOW_MS);
    let w = this.windows.get(key);
    if (!w || w.start !== start) {
      w = { start, count: 0 };
      this.windows.set(key, w);
      this.prune(start);
    }
    const resetAtMs = start + WINDOW_MS;
    if (w.count >= rpm) return { allowed: false, remaining: 0, resetAtMs };
    w.count += 1;
    return { allowed: true, remaining: rpm - w.count, resetAtMs };
  }

  async acquire(key: string, limit: number): Promise<(() => void) | null> {
    const used = this.slots.get(key) ?? 0;
    if (used >= limit) return null;
    this.slots.set(key, used + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.slots.get(key) ?? 1) - 1;
      if (n <= 0) this.slots.delete(key);
      else this.slots.set(key, n);
    };
  }

  async inFlight(key: string): Promise<number> {
    return this.slots.get(key) ?? 0;
  }

  /** Drops windows older than the current one so the map does not grow without bound. */
  private prune(currentStart: number): void {
    if (this.windows.size < 10_000) return;
    for (const [k, w] of this.windows) if (w.start < currentStart) this.windows.delete(k);
  }
}
