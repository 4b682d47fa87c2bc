/**
 * Per-key limits in Redis, so they hold across gateway replicas. Each decision is one Lua
 * script (atomic on the server: no read-then-write race between gateways), timed by the
 * Redis server's clock (TIME), so gateways with skewed clocks still share one window.
 *
 * - requests per minute: a counter per key and clock-aligned minute, refused requests not
 *   counted (the same semantics as LocalLimiter);
 * - concurrency: a sorted set per key of holder → expiry; expired holders are dropped
 *   before counting, so a slot whose holder died comes back by itself.
 */
import type { Redis } from 'ioredis';
import type { Limiter, RateDecision } from './limits.js';
import type { RedisKeys } from '../redis/connection.js';

const WINDOW_MS = 60_000;

const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// KEYS[1] counter prefix; ARGV[1] limit, ARGV[2] window (ms) → {allowed, remaining, reset at (ms)}
const HIT = `${NOW_MS}
local w = tonumber(ARGV[2])
local start = now - (now % w)
local key = KEYS[1] .. ':' .. start
local limit = tonumber(ARGV[1])
local n = tonumber(redis.call('GET', key) or '0')
if n >= limit then return {0, 0, start + w} end
n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, w * 2) end
return {1, limit - n, start + w}`;

// KEYS[1] slots; ARGV[1] limit, ARGV[2] holder, ARGV[3] ttl (ms) → 1 taken (or already held), 0 full
const ACQUIRE = `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`;

// KEYS[1] slots → holders whose time has not run out
const IN_FLIGHT = `${NOW_MS}
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')`;

type Script = (...args: Array<string | number>) => Promise<unknown>;

export class RedisLimiter implements Limiter {
  private readonly scripts: { hit: Script; acquire: Script; inFlight: Script };

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    // defineCommand runs each script by its SHA (EVALSHA), loading it on first use.
    redis.defineCommand('kleinRateHit', { numberOfKeys: 1, lua: HIT });
    redis.defineCommand('kleinSlotAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    redis.defineCommand('kleinSlotsInFlight', { numberOfKeys: 1, lua: IN_FLIGHT });
    const r = redis as unknown as Record<string, Script>;
    this.scripts = {
      hit: (...a) => r.kleinRateHit!.apply(redis, a),
      acquire: (...a) => r.kleinSlotAcquire!.apply(redis, a),
      inFlight: (...a) => r.kleinSlotsInFlight!.apply(redis, a),
    };
  }

  async hit(key: string, rpm: number): Promise<RateDecision> {
    const [allowed, remaining, reset] = (await this.scripts.hit(this.keys.rate(key), rpm, WINDOW_MS)) as [number, number, number];
    return { allowed: allowed === 1, remaining, resetAtMs: reset };
  }

  async acquire(key: string, limit: number, holder: string, ttlMs: number): Promise<boolean> {
    return (await this.scripts.acquire(this.keys.slots(key), limit, holder, Math.max(1, Math.round(ttlMs)))) === 1;
  }

  async release(key: string, holder: string): Promise<void> {
    await this.redis.zrem(this.keys.slots(key), holder);
  }

  async inFlight(key: string): Promise<number> {
    return Number(await this.scripts.inFlight(this.keys.slots(key)));
  }
}
