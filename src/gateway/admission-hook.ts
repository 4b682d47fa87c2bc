/**
 * The cheap refusals of a generation route, as an `onRequest` hook after auth and the rate
 * limit: they come before the body is read (a 60 MB body is not buffered for a caller that
 * cannot pay), and long before any reference image is fetched or decoded.
 *
 *   credit floor (406)   the balance is below the cheapest request there is (the smallest
 *                        size, one step, no guidance); the handler checks the request's own
 *                        price without references next, still before fetching any
 *   concurrency (429)    one of the key's slots is taken for this request
 *
 * The slot is held by the request id until the request ends: handed over to whoever ends it
 * once the request is queued (generate.ts), otherwise given back when the answer is sent or
 * the connection closes. A retry with an Idempotency-Key this account already used takes
 * neither check: it answers the existing request and costs nothing.
 *
 * The hook also arms the request's client-gone signal (client-gone.ts).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { microToCredits, priceMicro, type PricingConfig } from '../billing/pricing.js';
import { MIN_SIDE } from '../contract/aspect-ratios.js';
import { MIN_CFG, MIN_STEPS } from '../contract/request-schema.js';
import { slotKey } from '../queue/lifecycle.js';
import { findByIdempotencyKey } from '../store/requests.js';
import type { AppDeps } from './app.js';
import { requireCaller } from './auth.js';
import { clientGoneSignal } from './client-gone.js';
import { ApiError } from '../contract/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Aborts when the client goes away before its answer (set by the admission hook). */
    clientGone?: AbortSignal;
    /** The concurrency slot this request took; `handedOver` once a queued request owns it. */
    slot?: { handedOver: boolean };
  }
}

/** The price of the cheapest request there is: a floor under every request's price. */
export function cheapestPrice(pricing: PricingConfig): number {
  return priceMicro({ steps: MIN_STEPS, cfg: MIN_CFG, sampler: 'euler', width: MIN_SIDE, height: MIN_SIDE }, pricing, 0);
}

/** 406, with both numbers (contract §2). */
export function insufficientCredits(priceMicroNeeded: number, balanceMicro: number, what = 'this request costs'): ApiError {
  return new ApiError('insufficient_credits', `Insufficient credits: ${what} ${microToCredits(priceMicroNeeded)} credits and the balance is ${microToCredits(balanceMicro)}`);
}

export function concurrencyError(limit: number): ApiError {
  return new ApiError('concurrency_limited', `Too many concurrent requests: this key allows ${limit} at a time`, {
    headers: { 'retry-after': '1' },
  });
}

export function limitsUnavailable(what: string, cause: unknown): ApiError {
  return new ApiError('queue_unavailable', `${what} cannot be checked right now (Redis is unreachable); try again shortly`, {
    headers: { 'retry-after': '5' },
    cause,
  });
}

/**
 * How long a synchronous request can live: past the sync timeout (when every call has
 * stopped waiting) with a minute to spare. Its slot expires then, and its held charge, if no
 * answer settled it, is released by the repair sweep.
 */
export function syncLifetimeMs(config: Config): number {
  return config.syncTimeoutS * 1000 + 60_000;
}

/** How long a request may hold its concurrency slot at most: its longest life on its route. */
export function slotTtlMs(config: Config, route: 'v1' | 'v2'): number {
  return route === 'v1' ? syncLifetimeMs(config) : config.retentionMs;
}

/**
 * @param o.route v1 for the synchronous routes (OpenAI's included), v2 for the asynchronous one.
 * @param o.floor the cheapest request of the models the route serves (cheapestPrice).
 */
export function admissionHook(deps: AppDeps, o: { route: 'v1' | 'v2'; floor: number }) {
  const { floor } = o;
  return async function admission(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const caller = requireCaller(req);
    req.clientGone = clientGoneSignal(reply);
    const idem = req.headers['idempotency-key'];
    if (typeof idem === 'string' && idem !== '' && (await findByIdempotencyKey(deps.db, caller.accountId, idem))) return;

    if (caller.balanceMicro < floor) throw insufficientCredits(floor, caller.balanceMicro, 'the cheapest request costs');

    const key = slotKey(caller.keyId);
    const taken = await deps.limiter.acquire(key, caller.concurrency, req.id, slotTtlMs(deps.config, o.route)).catch((err: unknown) => {
      throw limitsUnavailable('Concurrency limits', err);
    });
    if (!taken) throw concurrencyError(caller.concurrency);
    const slot = { handedOver: false };
    req.slot = slot;
    reply.raw.once('close', () => {
      if (!slot.handedOver) void deps.limiter.release(key, req.id).catch(() => undefined);
    });
  };
}
