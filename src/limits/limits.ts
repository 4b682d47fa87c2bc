/**
 * Per-key limits: requests per minute (fixed one-minute windows aligned to the clock, so
 * `x-rate-limit-reset-at-utc` is the start of the next minute) and concurrent requests.
 *
 * A concurrency slot is held by a request id until it is released, or until its time to
 * live passes (so a slot whose holder vanished — a gateway or worker that died — comes
 * back by itself). Releasing is idempotent and may happen anywhere: the gateway that
 * admitted a request, or the worker that ended it.
 *
 * `Limiter` is the interface; `LocalLimiter` holds the counts in this process (the
 * embedded default, one gateway); `RedisLimiter` (redis-limiter.ts) holds them in Redis
 * with atomic scripts, so they hold across gateway replicas.
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
  /** Takes a slot for `holder` (taking it again is a no-op); false when all `limit` are held. */
  acquire(key: string, limit: number, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives `holder`'s slot back (nothing happens when it holds none). */
  release(key: string, holder: string): Promise<void>;
  /** Slots held for `key` (for tests and metrics). */
  inFlight(key: string): Promise<number>;
}

const WINDOW_MS = 60_000;

export class LocalLimiter implements Limiter {
  private readonly windows = new Map<string, { start: number; count: number }>();
  /** key → holder → expiry (epoch ms). */
  private readonly slots = new Map<string, Map<string, number>>();

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

  async acquire(key: string, limit: number, holder: string, ttlMs: number): Promise<boolean> {
    const held = this.live(key);
    if (held.has(holder)) return true;
    if (held.size >= limit) return false;
    held.set(holder, Date.now() + ttlMs);
    return true;
  }

  async release(key: string, holder: string): Promise<void> {
    const held = this.slots.get(key);
    held?.delete(holder);
    if (held?.size === 0) this.slots.delete(key);
  }

  async inFlight(key: string): Promise<number> {
    return this.live(key).size;
  }

  /** The holders of `key` whose time has not run out. */
  private live(key: string): Map<string, number> {
    let held = this.slots.get(key);
    if (!held) {
      held = new Map();
      this.slots.set(key, held);
    }
    const now = Date.now();
    for (const [h, until] of held) if (until <= now) held.delete(h);
    return held;
  }

  /** Drops windows older than the current one so the map does not grow without bound. */
  private prune(currentStart: number): void {
    if (this.windows.size < 10_000) return;
    for (const [k, w] of this.windows) if (w.start < currentStart) this.windows.delete(k);
  }
}
