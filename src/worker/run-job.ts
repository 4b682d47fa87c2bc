/**
 * Runs one claimed request on an engine, the same way for the embedded queue and for a
 * worker of the fleet:
 *
 *   engine.generate (progress → notifier) → encode (sharp) → store output
 *     → Lifecycle.completed (owner-guarded: settle)      → COMPLETED
 *   cancel (user, timeout, client gone, shutdown)         → Lifecycle.cancelled (release)
 *   engine crashed, attempts left (async requests)        → back to QUEUED: 'retry'
 *   any other failure                                     → Lifecycle.failed (release)
 *
 * The row must already be PROCESSING and owned by `owner` (see claimNext / claimById).
 */
import type { Logger } from 'pino';
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import { ApiError } from '../contract/errors.js';
import type { Metrics } from '../metrics/metrics.js';
import { encodeImage } from '../images/encode.js';
import { generationMetadata } from '../images/generation-metadata.js';
import type { CancelReason } from '../queue/events.js';
import type { Lifecycle } from '../queue/lifecycle.js';
import { CONTENT_TYPES, outputKey } from '../queue/storage-keys.js';
import type { RequestRow } from '../store/requests.js';
import type { OutputStorage } from '../storage/types.js';
import { Cancelled, EngineCrashed, type EngineJob, type EngineOutput } from './engine-process.js';

/** What a job needs of an engine (EngineProcess is one). */
export interface Engine {
  generate(
    job: EngineJob,
    opts: { onProgress?: (step: number, total: number, preview?: RgbImage) => void; signal?: AbortSignal },
  ): Promise<EngineOutput>;
}

export interface RunJobContext {
  lifecycle: Lifecycle;
  engine: Engine;
  storage: OutputStorage;
  metrics: Metrics;
  logger: Logger;
  imageMetadata: boolean;
  /** Engine starts a request may take before it is failed. */
  maxAttempts: number;
}

/** A running job's cancel handle: `abort(reason)` stops it between two steps. */
export class JobControl {
  readonly abort = new AbortController();
  reason: CancelReason | undefined;

  cancel(reason: CancelReason): void {
    this.reason ??= reason;
    this.abort.abort();
  }
}

/** Whether a request whose engine died is tried again: asynchronous ones, while attempts remain. */
export function retriesOnCrash(row: RequestRow, maxAttempts: number): boolean {
  return row.route === 'v2' && row.attempts < maxAttempts;
}

/**
 * Runs the job to its end. Returns 'done' when the request reached a terminal state (or
 * was no longer ours), 'retry' when it went back to QUEUED after an engine crash.
 */
export async function runJob(
  ctx: RunJobContext,
  row: RequestRow,
  job: { params: ResolvedParams; images: RgbImage[]; priceMicro: number; enqueuedAt: number },
  owner: string,
  control: JobControl,
): Promise<'done' | 'retry'> {
  const { id } = row;
  const { params } = job;
  const startedAt = Date.now();
  ctx.metrics.stageSeconds.observe({ stage: 'queue' }, Math.max(0, startedAt - job.enqueuedAt) / 1000);
  try {
    if (control.reason) throw new Cancelled(control.reason);
    const out = await ctx.engine.generate(
      { id, params, images: job.images, preview: row.route === 'v2' },
      { onProgress: (step, total, preview) => ctx.lifecycle.progress(id, { step, total, preview }), signal: control.abort.signal },
    );
    const t0 = Date.now();
    const bytes = await encodeImage(out.image, {
      format: params.image_format,
      quality: params.quality,
      metadata: ctx.imageMetadata ? generationMetadata(params, out.seed) : null,
    });
    const encodeMs = Date.now() - t0;
    const key = outputKey(id, params.image_format);
    await ctx.storage.put(key, bytes, CONTENT_TYPES[params.image_format]);
    const timings = { ...out.timings, encode_ms: encodeMs };
    const generationTimeS = (Date.now() - startedAt) / 1000;
    for (const stage of ['text', 'denoise', 'decode'] as const) {
      const ms = out.timings[`${stage}_ms`];
      if (typeof ms === 'number') ctx.metrics.stageSeconds.observe({ stage }, ms / 1000);
    }
    ctx.metrics.stageSeconds.observe({ stage: 'encode' }, encodeMs / 1000);
    ctx.metrics.stageSeconds.observe({ stage: 'total' }, generationTimeS);
    // A cancel that raced the end of generation wins: the client is gone or timed out.
    if (control.reason) throw new Cancelled(control.reason);
    const output = { bytes, format: params.image_format, contentType: CONTENT_TYPES[params.image_format], width: out.image.width, height: out.image.height, seed: out.seed };
    const done = await ctx.lifecycle.completed(id, { owner, priceMicro: job.priceMicro, output, outputKey: key, generationTimeS, timings });
    if (!done) ctx.logger.warn({ request_id: id }, 'the request was no longer this worker\'s when it finished; its result was dropped');
    return 'done';
  } catch (err) {
    if (err instanceof Cancelled || control.reason) {
      await ctx.lifecycle.cancelled(id, control.reason ?? 'user', ['PROCESSING'], owner);
      return 'done';
    }
    if (err instanceof EngineCrashed && retriesOnCrash(row, ctx.maxAttempts)) {
      if (await ctx.lifecycle.requeue(id, owner)) {
        ctx.logger.warn({ request_id: id, attempt: row.attempts }, 'engine failed; request requeued');
        return 'retry';
      }
    }
    const apiErr = err instanceof ApiError ? err : new ApiError('internal', undefined, { cause: err });
    if (!(err instanceof ApiError)) ctx.logger.error({ err, request_id: id }, 'job failed');
    await ctx.lifecycle.failed(id, apiErr, ['PROCESSING'], owner);
    return 'done';
  }
}
