/**
 * The path every generation request takes after the onRequest hooks (auth, rate limit and
 * admission-hook.ts: credit floor, concurrency slot) and the route's schema validation
 * (validation.ts: the body arrives valid), shared by the routes:
 * idempotency → readiness → price without references (406) → webhook URL → LoRA headers →
 * references → resolve → price → reserve → enqueue. Each stage throws an ApiError with the
 * contract's status; the cheap refusals come before the expensive stages, nothing is
 * reserved before the last check that can refuse, and a client that has gone (its signal)
 * stops the path before anything is queued.
 */
import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { MIN_SIDE } from '../contract/aspect-ratios.js';
import { needsReferenceSize, resolveParams } from '../contract/resolve.js';
import { priceMicro, type PricingConfig } from '../billing/pricing.js';
import type { ServedModel } from '../contract/models.js';
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import type { GenerateInput } from '../contract/request-schema.js';
import { loadReferenceImages } from '../images/references.js';
import { parseAllowNetworks } from '../net/networks.js';
import { checkUrl, resolveChecked } from '../net/safe-fetch.js';
import { findByIdempotencyKey, type RequestRow } from '../store/requests.js';
import { ApiError } from '../contract/errors.js';
import type { AppDeps } from './app.js';
import type { Caller } from './auth.js';
import { healthOf } from './routes/health.js';
import { slotKey } from '../queue/lifecycle.js';
import { checkLoras } from './lora-check.js';
import { concurrencyError, insufficientCredits, limitsUnavailable, slotTtlMs, syncLifetimeMs } from './admission-hook.js';

export type Admitted =
  | {
      kind: 'new';
      id: string;
      params: ResolvedParams;
      priceMicro: number;
      /** Whether the charge waits for the answer to be delivered (queue/delivery.ts). */
      held: boolean;
      /** Gives the caller's concurrency slot back; call once the request is over. */
      releaseSlot: () => void;
    }
  /** The same Idempotency-Key and body were seen before: this is that request. */
  | { kind: 'existing'; row: RequestRow };

export interface AdmitOptions {
  route: 'v1' | 'v2';
  /** The served model it runs on (its defaults, price and queue). */
  model: ServedModel;
  idempotencyKey?: string | undefined;
  /** The request id (default: the HTTP request's id; several images of one call need their own). */
  id?: string;
  /** Aborts when the client has gone: the path stops before anything is queued. */
  signal?: AbortSignal | undefined;
  /** Hold the charge until the answer is delivered (a synchronous call without an Idempotency-Key). */
  hold?: boolean;
}

/**
 * Throws 503 while the model's engine starts or the server drains, 502 when it failed; and
 * for a synchronous call (`route` v1), 503 when no worker of the fleet serves the model now
 * (an asynchronous one waits in its queue for one).
 */
export async function assertReady(deps: AppDeps, model: string, route: 'v1' | 'v2'): Promise<void> {
  let h = healthOf(deps, model);
  // The fleet view behind healthOf is at most a second old: look again before refusing.
  if (h.noWorkers && route === 'v1') h = deps.draining?.() ? h : await deps.queue.readinessNow(model);
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
  if (h.noWorkers && route === 'v1') {
    throw new ApiError('no_workers', `No worker serves ${model} right now; its workers are starting or scaled to zero. Try again shortly, or use POST /v2/${model}, which waits in the queue`, {
      headers: { 'retry-after': String(h.noWorkers.retryAfterS) },
    });
  }
}

/** The price function of a served model (config.pricing has one for each). */
export function pricingOf(deps: AppDeps, model: string): PricingConfig {
  const p = deps.config.pricing.get(model);
  if (!p) throw new Error(`no price for the model ${model} (config.pricing has one for each served model)`);
  return p;
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

function checkReplay(existing: RequestRow, hash: string): Admitted {
  if (existing.idempotency_hash !== hash) {
    throw new ApiError('idempotency_conflict', 'This Idempotency-Key was already used with a different request body', {
      details: [{ field: 'Idempotency-Key', message: `was used for request ${existing.id} with another body` }],
    });
  }
  return { kind: 'existing', row: existing };
}

/** A lower bound of the price before the references are fetched: their pixels only add, and an unknown size counts as the smallest. */
function priceWithoutReferences(deps: AppDeps, input: GenerateInput, model: ServedModel): number {
  const p = needsReferenceSize(input)
    ? { ...resolveParams({ ...input, aspect_ratio: '1:1' }, [], () => 0, model.defaults), width: MIN_SIDE, height: MIN_SIDE }
    : resolveParams(input, [], () => 0, model.defaults);
  return priceMicro(p, pricingOf(deps, model.slug), 0);
}

/**
 * Admits a validated generation body: `input` passed the route's schema (or, for the OpenAI
 * routes, the Segmind body made from theirs), and an Idempotency-Key its header schema.
 */
export async function admit(deps: AppDeps, req: FastifyRequest, caller: Caller, input: GenerateInput, opts: AdmitOptions): Promise<Admitted> {
  const gone = opts.signal;
  // 1. Idempotency: the same key and body is the same request (charged once).
  const idemKey = opts.idempotencyKey;
  let hash: string | null = null;
  if (idemKey !== undefined) {
    hash = bodyHash(opts.route, input);
    const existing = await findByIdempotencyKey(deps.db, caller.accountId, idemKey);
    if (existing) return checkReplay(existing, hash);
  }

  // 2. Is there an engine to run it? (503 starting/draining/no worker, 502 failed)
  const model = opts.model;
  await assertReady(deps, model.slug, opts.route);

  // 3. Can the caller pay for it even without its references? (406 before any fetch)
  const floor = priceWithoutReferences(deps, input, model);
  if (caller.balanceMicro < floor) throw insufficientCredits(floor, caller.balanceMicro);

  // 4. The webhook URL must pass the SSRF guard now, not only when it is called.
  const allow = parseAllowNetworks(deps.config.allowNetworks);
  if (input.webhook_url) {
    await resolveChecked(checkUrl(input.webhook_url, { field: 'webhook_url' }), { allow, field: 'webhook_url' });
  }

  // 4b. Each LoRA's header, read without its body and checked against the model (400 invalid_lora).
  gone?.throwIfAborted();
  await checkLoras(deps, req, input.loras ?? [], model, allow, gone);

  // 5. Fetch and decode the references (400 per bad image, naming its field).
  gone?.throwIfAborted();
  const t0 = Date.now();
  const refs = await loadReferenceImages(input.image_urls ?? [], {
    allowNetworks: deps.config.allowNetworks,
    maxBytes: deps.config.imageMaxBytes,
    maxPixels: deps.config.imageMaxPixels,
    timeoutMs: deps.config.fetchTimeoutMs,
    signal: gone,
  });
  if (refs.length > 0) deps.metrics.stageSeconds.observe({ stage: 'fetch' }, (Date.now() - t0) / 1000);
  const images: RgbImage[] = refs.map((r) => r.image);

  // 6. Resolve defaults, seed and size; price it (references add their pixels).
  const params = resolveParams(input, refs.map((r) => r.original), undefined, model.defaults);
  const refPixels = images.reduce((n, i) => n + i.width * i.height, 0);
  const price = priceMicro(params, pricingOf(deps, model.slug), refPixels);

  // 7. Concurrency (429): a request holds one of its key's slots until it ends. The
  //    admission hook took the call's first one (its id is the HTTP request's); the other
  //    images of an OpenAI call take theirs here.
  const id = opts.id ?? req.id;
  const key = slotKey(caller.keyId);
  const slot = await deps.limiter.acquire(key, caller.concurrency, id, slotTtlMs(deps.config, opts.route)).catch((err: unknown) => {
    throw limitsUnavailable('Concurrency limits', err);
  });
  if (!slot) throw concurrencyError(caller.concurrency);
  const releaseSlot = () => void deps.limiter.release(key, id).catch(() => undefined);

  // 8. Reserve credits and enqueue (406 when short), unless the client has gone.
  try {
    gone?.throwIfAborted();
    const held = opts.hold === true;
    const r = await deps.queue.submit({
      id,
      accountId: caller.accountId,
      keyId: caller.keyId,
      route: opts.route,
      model: model.slug,
      params,
      storedParams: storableParams(params),
      images,
      priceMicro: price,
      webhookUrl: input.webhook_url ?? null,
      idempotencyKey: idemKey ?? null,
      idempotencyHash: hash,
      holdUntil: held ? Date.now() + syncLifetimeMs(deps.config) : null,
    });
    if (!r.ok && r.reason === 'duplicate') {
      releaseSlot();
      return checkReplay(r.existing, hash ?? '');
    }
    if (!r.ok) throw insufficientCredits(price, r.balanceMicro);
    if (id === req.id && req.slot) req.slot.handedOver = true;
    return { kind: 'new', id, params, priceMicro: price, held, releaseSlot };
  } catch (err) {
    releaseSlot();
    throw err;
  }
}
