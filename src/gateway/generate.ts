/**
 * The path every generation request takes after authentication, shared by the routes:
 * validate → readiness → references → resolve → price → concurrency → reserve → enqueue.
 * Each stage throws an ApiError with the contract's status; nothing is reserved before the
 * last check that can refuse, and every refusal after the reservation releases it.
 */
import { createHash, randomInt } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { validateGenerateBody } from '../contract/validate.js';
import { resolveParams } from '../contract/resolve.js';
import { priceMicro, microToCredits } from '../contract/pricing.js';
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import { loadReferenceImages } from '../images/references.js';
import { ApiError } from './errors.js';
import type { AppDeps } from './app.js';
import type { Caller } from './auth.js';
import { healthOf } from './routes/health.js';

export interface Admitted {
  id: string;
  params: ResolvedParams;
  priceMicro: number;
  /** Gives the caller's concurrency slot back; call once the request is over. */
  releaseSlot: () => void;
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
  if (h.status === 'UNHEALTHY') throw new ApiError('engine_unavailable', `No engine can take work: ${h.reason}`);
}

/** Replaces data: URIs by a digest so rows never hold image bytes. */
export function storableParams(p: ResolvedParams): Record<string, unknown> {
  return {
    ...p,
    image_urls: p.image_urls.map((u) =>
      u.startsWith('data:')
        ? `data:;sha256=${createHash('sha256').update(u).digest('hex')};length=${u.length}`
        : u,
    ),
  };
}

export async function admit(
  deps: AppDeps,
  req: FastifyRequest,
  caller: Caller,
  body: unknown,
  opts: { route: string; preview?: boolean },
): Promise<Admitted> {
  // 1. Validate (400 with one message per bad field).
  const v = validateGenerateBody(body, { allowWebhook: false });
  if (!v.ok) throw new ApiError('validation_failed', summarise(v.details), { details: v.details });
  const input = v.value;

  // 2. Is there an engine to run it? (503 starting/draining, 502 failed)
  assertReady(deps);

  // 3. Fetch and decode the references (400 per bad image, naming its field).
  const t0 = Date.now();
  const refs = await loadReferenceImages(input.image_urls ?? [], {
    allowNetworks: deps.config.allowNetworks,
    maxBytes: deps.config.imageMaxBytes,
    maxPixels: deps.config.imageMaxPixels,
    timeoutMs: deps.config.fetchTimeoutMs,
  });
  if (refs.length > 0) deps.metrics.stageSeconds.observe({ stage: 'fetch' }, (Date.now() - t0) / 1000);
  const images: RgbImage[] = refs.map((r) => r.image);

  // 4. Resolve defaults, seed and size; price it.
  const params = resolveParams(input, refs.map((r) => r.original), randomSeed);
  const price = priceMicro(params, deps.pricing);

  // 5. Concurrency slot (429).
  const releaseSlot = await deps.limiter.acquire(`key:${caller.keyId}`, caller.concurrency);
  if (!releaseSlot) {
    throw new ApiError('concurrency_limited', `Too many concurrent requests: this key allows ${caller.concurrency} at a time`, {
      headers: { 'retry-after': '1' },
    });
  }

  // 6. Reserve credits and enqueue (406 when short).
  try {
    const id = req.id;
    const r = await deps.queue.submit({
      id,
      accountId: caller.accountId,
      keyId: caller.keyId,
      route: opts.route,
      params,
      storedParams: storableParams(params),
      images,
      priceMicro: price,
      preview: opts.preview ?? false,
    });
    if (!r.ok) {
      throw new ApiError(
        'insufficient_credits',
        `Insufficient credits: this request costs ${microToCredits(price)} credits and the balance is ${microToCredits(r.balanceMicro)}`,
      );
    }
    return { id, params, priceMicro: price, releaseSlot };
  } catch (err) {
    releaseSlot();
    throw err;
  }
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
