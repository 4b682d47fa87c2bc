/**
 * Requests-per-minute limit per key, as an `onRequest` hook that runs after auth and
 * before the body is read. Sets x-rate-limit-remaining and x-rate-limit-reset-at-utc on
 * every answer of the route; a refusal is 429 with Retry-After (seconds to the reset).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../contract/errors.js';
import { requireCaller } from './auth.js';
import type { Limiter } from '../limits/limits.js';

export function rateLimitHook(limiter: Limiter) {
  return async function rateLimit(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const caller = requireCaller(req);
    const now = Date.now();
    const d = await limiter.hit(`key:${caller.keyId}`, caller.rpm, now).catch((err: unknown) => {
      // The limits live in Redis when scaled out: without them nothing is admitted.
      throw new ApiError('queue_unavailable', 'Rate limits cannot be checked right now (Redis is unreachable); try again shortly', {
        headers: { 'retry-after': '5' },
        cause: err,
      });
    });
    const resetAt = new Date(d.resetAtMs).toISOString();
    reply.header('x-rate-limit-remaining', String(d.remaining));
    reply.header('x-rate-limit-reset-at-utc', resetAt);
    if (!d.allowed) {
      const retryAfter = Math.max(1, Math.ceil((d.resetAtMs - now) / 1000));
      throw new ApiError('rate_limited', `Rate limit of ${caller.rpm} requests per minute reached; it resets at ${resetAt}`, {
        headers: { 'retry-after': String(retryAfter), 'x-rate-limit-reset-at-utc': resetAt, 'x-rate-limit-remaining': '0' },
      });
    }
  };
}
