/**
 * The path every generation request takes after authentication, shared by the routes:
 * validate → idempotency → readiness → references → resolve → price → concurrency →
 * reserve → enqueue. Each stage throws an ApiError with the contract's status; nothing is
 * reserved before the last check that can refuse, and every refusal after the reservation
 * releases it.
 */
import { createHash, randomInt } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { validateGenerateBody } from '../contract/validate.js';
import { resolveParams } from '../contract/resolve.js';
import { priceMicro, microToCredits } from '../contract/pricing.js';
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import { loadReferenceImages } from '../images/references.js';
import { parseAllowNetworks } from '../images/networks.js';
import { checkUrl, resolveChecked } from '../images/safe-fetch.js';
import { findByIdempotencyKey, type RequestRow } from '../store/requests.js';
import { ApiError } from './errors.js';
import type { AppDeps } from './app.js';
import type { Caller } from './auth.js';
import { healthOf } from './routes/health.js';
import { slotKey } from '../queue/lifecycle.js';

export type Admitted =
  | {
      kind: 'new';
      id: string;
      params: ResolvedParams;
      priceMicro: number;
      /** Gives the caller's concurrency slot back; call once the request is over. */
      releaseSlot: () => void;
    }
  /** The same Idempotency-Key and body were seen before: this is that request. */
  | { kind: 'existing'; row: RequestRow };

export interface AdmitOptions {
  route: 'v1' | 'v2';
  idempotencyKey?: string | undefined;
  /** The request id (default: the HTTP request's id; several images of one call need their own). */
  id?: string;
}

/** Throws 503 while the engine starts or the server drains, 502 when it failed. */
export function assertReady(deps: AppDeps): void {
  const h = healthOf(deps);
  if (h.status === 'STARTING') {
    throw new ApiError('not_ready', 'The model is loading; try again shortly', {
      headers: { 'retry-after': String(deps.config.startingRetryAfterS) },
    });
  }
  if (h.status === 'DRAINING') {
    throw new ApiError('draining', 'The server is shutting down', { headers: { 'retry-after': '30' } });
  }
  if (h.status === 'UNHEALTHY' && h.retryAfterS !== undefined) {
    throw new ApiError('queue_unavailable', `The job queue is unavailable (${h.reason}); try again shortly`, { headers: { 'retry-after': String(h.retryAfterS) } });
  }
  if (h.status === 'UNHEALTHY') throw new ApiError('engine_unavailable', `No engine can take work: ${h.reason}`);
}

/** Replaces data: URIs by a digest so rows never hold image bytes. */
export function storableParams(p: ResolvedParams): Record<string, unknown> {
  return {
    ...p,
    image_urls: p.image_urls.map((u) =>
      u.startsWith('data:') ? `data:;sha256=${createHash('sha256').update(u).digest('hex')};length=${u.length}` : u,
    ),
  };
}

/** JSON with sorted keys, so the same body always hashes the same (key order is not content). */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export function bodyHash(route: string, body: unknown): string {
  return createHash('sha256').update(`${route}\n${canonical(body)}`).digest('hex');
}

export const MAX_IDEMPOTENCY_KEY = 255;

function checkReplay(existing: RequestRow, hash: string): Admitted {
  if (existing.idempotency_hash !== hash) {
    throw new ApiError('idempotency_conflict', 'This Idempotency-Key was already used with a different request body', {
      details: [{ field: 'Idempotency-Key', message: `was used for request ${existing.id} with another body` }],
    });
  }
  return { kind: 'existing', row: existing };
}

export async function admit(deps: AppDeps, req: FastifyRequest, caller: Caller, body: unknown, opts: AdmitOptions): Promise<Admitted> {
  // 1. Validate (400 with one message per bad field).
  const v = validateGenerateBody(body, { allowWebhook: opts.route === 'v2' });
  if (!v.ok) throw new ApiError('validation_failed', summarise(v.details), { details: v.details });
  const input = v.value;

  // 2. Idempotency: the same key and body is the same request (charged once).
  const idemKey = opts.idempotencyKey;
  let hash: string | null = null;
  if (idemKey !== undefined) {
    if (idemKey.length === 0 || idemKey.length > MAX_IDEMPOTENCY_KEY) {
      throw new ApiError('validation_failed', `Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY} characters`, {
        details: [{ field: 'Idempotency-Key', message: `must be 1 to ${MAX_IDEMPOTENCY_KEY} characters` }],
      });
    }
    hash = bodyHash(opts.route, body);
    const existing = await findByIdempotencyKey(deps.db, caller.accountId, idemKey);
    if (existing) return checkReplay(existing, hash);
  }

  // 3. Is there an engine to run it? (503 starting/draining, 502 failed)
  assertReady(deps);

  // 4. The webhook URL must pass the SSRF guard now, not only when it is called.
  if (input.webhook_url) {
    await resolveChecked(checkUrl(input.webhook_url, { field: 'webhook_url' }), {
      allow: parseAllowNetworks(deps.config.allowNetworks),
      field: 'webhook_url',
    });
  }

  // 5. Fetch and decode the references (400 per bad image, naming its field).
  const t0 = Date.now();
  const refs = await loadReferenceImages(input.image_urls ?? [], {
    allowNetworks: deps.config.allowNetworks,
    maxBytes: deps.config.imageMaxBytes,
    maxPixels: deps.config.imageMaxPixels,
    timeoutMs: deps.config.fetchTimeoutMs,
  });
  if (refs.length > 0) deps.metrics.stageSeconds.observe({ stage: 'fetch' }, (Date.now() - t0) / 1000);
  const images: RgbImage[] = refs.map((r) => r.image);

  // 6. Resolve defaults, seed and size; price it (references add their pixels).
  const params = resolveParams(input, refs.map((r) => r.original), randomSeed);
  const refPixels = images.reduce((n, i) => n + i.width * i.height, 0);
  const price = priceMicro(params, deps.pricing, refPixels);

  // 7. Concurrency (429): a request holds one of its key's slots from here until it ends
  //    (released by whoever ends it: this gateway for a sync call, or the worker).
  const id = opts.id ?? req.id;
  const key = slotKey(caller.keyId);
  const ttlMs = opts.route === 'v1' ? deps.config.syncTimeoutS * 1000 + 60_000 : deps.config.retentionMs;
  const slot = await deps.limiter.acquire(key, caller.concurrency, id, ttlMs).catch((err: unknown) => {
    throw new ApiError('queue_unavailable', 'Concurrency limits cannot be checked right now (Redis is unreachable); try again shortly', {
      headers: { 'retry-after': '5' },
      cause: err,
    });
  });
  if (!slot) throw concurrencyError(caller.concurrency);
  const releaseSlot = () => void deps.limiter.release(key, id).catch(() => undefined);

  // 8. Reserve credits and enqueue (406 when short).
  try {
    const r = await deps.queue.submit({
      id,
      accountId: caller.accountId,
      keyId: caller.keyId,
      route: opts.route,
      params,
      storedParams: storableParams(params),
      images,
      priceMicro: price,
      webhookUrl: input.webhook_url ?? null,
      idempotencyKey: idemKey ?? null,
      idempotencyHash: hash,
    });
    if (!r.ok && r.reason === 'duplicate') {
      releaseSlot();
      return checkReplay(r.existing, hash ?? '');
    }
    if (!r.ok) {
      throw new ApiError(
        'insufficient_credits',
        `Insufficient credits: this request costs ${microToCredits(price)} credits and the balance is ${microToCredits(r.balanceMicro)}`,
      );
    }
    return { kind: 'new', id, params, priceMicro: price, releaseSlot };
  } catch (err) {
    releaseSlot();
    throw err;
  }
}

function concurrencyError(limit: number): ApiError {
  return new ApiError('concurrency_limited', `Too many concurrent requests: this key allows ${limit} at a time`, {
    headers: { 'retry-after': '1' },
  });
}

/** A uniform seed in 0…2^53−1 from the CSPRNG (randomInt takes ranges up to 2^48). */
export function randomSeed(): number {
  return randomInt(0, 2 ** 26) * 2 ** 27 + randomInt(0, 2 ** 27);
}

function summarise(details: Array<{ field: string; message: string }>): string {
  const first = details[0];
  if (!first) return 'Invalid request parameters';
  const more = details.length > 1 ? ` (and ${details.length - 1} more)` : '';
  return `${first.field}: ${first.message}${more}`;
}
