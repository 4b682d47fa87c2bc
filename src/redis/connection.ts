/**
 * Redis connections for the scale-out deployment (REDIS_URL). Which options each use gets,
 * following BullMQ's production guide (docs.bullmq.io/guide/going-to-production):
 * - workers (blocking connections): `maxRetriesPerRequest: null`, so a Redis outage makes
 *   them wait and reconnect rather than fail their loop;
 * - everything on the HTTP path (the BullMQ producer, rate limits, progress, cancel):
 *   `enableOfflineQueue: false`, so while Redis is away a request fails at once with a
 *   clear 503 instead of hanging, and nothing is queued in memory to replay later.
 * Reconnection is ioredis's own: exponential, capped at 2 s, forever.
 */
import { Redis, type RedisOptions } from 'ioredis';

/**
 * Connection options, as a plain object type: both ioredis and BullMQ (whose option type
 * has an index signature, which interfaces such as ioredis's RedisOptions cannot satisfy)
 * take it.
 */
export type ConnOptions = {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls?: Record<string, never>;
  retryStrategy: (times: number) => number;
  maxRetriesPerRequest?: number | null;
  enableOfflineQueue?: boolean;
};

/** Parses redis://[user:pass@]host[:port][/db] (rediss:// for TLS) into connection options. */
export function redisOptions(url: string): ConnOptions {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`REDIS_URL must start with redis:// or rediss://, got "${url}"`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error(`REDIS_URL: the database must be a number, got "${u.pathname.slice(1)}"`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  };
}

/** For BullMQ workers and subscribers: wait through outages. */
export function blockingOptions(url: string): ConnOptions {
  return { ...redisOptions(url), maxRetriesPerRequest: null };
}

/** For the request path: fail fast while Redis is away. */
export function failFastOptions(url: string): ConnOptions {
  return { ...redisOptions(url), enableOfflineQueue: false, maxRetriesPerRequest: 1 };
}

/** A client that logs its errors instead of crashing the process (ioredis emits 'error' while reconnecting). */
export function connect(opts: ConnOptions, onError: (err: Error) => void): Redis {
  const r = new Redis(opts as RedisOptions);
  r.on('error', onError);
  return r;
}

/** Key names under one prefix (KLEIN_REDIS_PREFIX, default `klein`), so several deployments can share a Redis. */
export class RedisKeys {
  constructor(readonly prefix: string) {}
  /** BullMQ's own prefix for its keys (each model's queue is `<prefix>:bull:generate.<slug>:*`). */
  get bull(): string {
    return `${this.prefix}:bull`;
  }
  get events(): string {
    return `${this.prefix}:events`;
  }
  get cancels(): string {
    return `${this.prefix}:cancel`;
  }
  progress(id: string): string {
    return `${this.prefix}:progress:${id}`;
  }
  rate(key: string): string {
    return `${this.prefix}:rate:${key}`;
  }
  slots(key: string): string {
    return `${this.prefix}:slots:${key}`;
  }
  get workers(): string {
    return `${this.prefix}:workers`;
  }
  worker(id: string): string {
    return `${this.prefix}:worker:${id}`;
  }
}

