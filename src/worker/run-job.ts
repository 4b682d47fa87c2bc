/**
 * Runs claimed requests on an engine, the same way for the embedded queue and for a worker
 * of the fleet. A batch (compatible requests claimed together, queue/batching.ts) is sent to
 * the engine at once; from there each request goes its own way:
 *
 *   engine.generateBatch (progress → notifier, per request) → encode (sharp) → store output
 *     → Lifecycle.completed (owner-guarded: settle)      → COMPLETED
 *   cancel (user, timeout, client gone, shutdown)         → Lifecycle.cancelled (release)
 *   engine crashed, attempts left (async requests)        → back to QUEUED: 'retry'
 *   any other failure                                     → Lifecycle.failed (release)
 *
 * So a request's charge, progress, cancel and failure stay its own: one cancelled request
 * leaves the batch between two steps and the others go on; an engine that dies fails (sync)
 * or requeues (async) each request of the batch. The rows must already be PROCESSING and
 * owned by `owner` (see claimNext / claimById / claimBatch).
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
import { Cancelled, EngineCrashed, type EngineJob, type EngineOutput, type GenerateOptions } from './engine-process.js';
import type { LoraFiles } from './lora-files.js';

/** What a job needs of an engine (EngineProcess is one). */
export interface Engine {
  /** Sends the jobs as one batch; each one's output, or why it has none. */
  generateBatch(jobs: Array<{ job: EngineJob; opts?: GenerateOptions }>): Array<Promise<EngineOutput>>;
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
  /** This process's LoRA files (contract §7). */
  loras: LoraFiles;
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

/** What a claimed request runs with. */
export interface JobToRun {
  row: RequestRow;
  job: { params: ResolvedParams; images: RgbImage[]; priceMicro: number; enqueuedAt: number };
  control: JobControl;
}

/** Whether a request whose engine died is tried again: asynchronous ones, while attempts remain. */
export function retriesOnCrash(row: RequestRow, maxAttempts: number): boolean {
  return row.route === 'v2' && row.attempts < maxAttempts;
}

/** Runs one job to its end (a batch of one). */
export async function runJob(
  ctx: RunJobContext,
  row: RequestRow,
  job: JobToRun['job'],
  owner: string,
  control: JobControl,
): Promise<'done' | 'retry'> {
  return (await runBatch(ctx, [{ row, job, control }], owner))[0]!;
}

/**
 * Runs the jobs as one batch, each to its end. Returns per job 'done' when its request
 * reached a terminal state (or was no longer ours), 'retry' when it went back to QUEUED
 * after an engine crash. Each completed request's timings record the batch it ran in
 * (`batch_size`: the requests sent to the engine together), and klein_batch_size counts
 * each batch sent.
 */
export async function runBatch(ctx: RunJobContext, jobs: JobToRun[], owner: string): Promise<Array<'done' | 'retry'>> {
  // A batch shares its adapters (queue/batching.ts): their files are fetched once, before the
  // run is timed, so a first download is waiting, not generation. A file that cannot be had
  // fails every job of the batch with its reason (released, not charged).
  const loras = await ctx.loras.resolve(jobs[0]?.job.params.loras ?? []).then(
    (resolved) => resolved,
    (err: unknown) => ({ err }),
  );
  const startedAt = Date.now();
  for (const { job } of jobs) ctx.metrics.stageSeconds.observe({ stage: 'queue' }, Math.max(0, startedAt - job.enqueuedAt) / 1000);
  const size = jobs.filter(({ control }) => !control.reason).length;
  if (size > 0) ctx.metrics.batchSize.observe(size);
  const outputs =
    'err' in loras
      ? jobs.map(() => Promise.reject(loras.err as Error))
      : ctx.engine.generateBatch(
    jobs.map(({ row, job, control }) => ({
      job: { id: row.id, params: job.params, images: job.images, preview: row.route === 'v2', ...(loras.files.length > 0 ? { loras: loras.files } : {}) },
      // Each step carries its run (the row's attempts since its claim), which makes its event id.
      opts: { onProgress: (step, total, preview) => ctx.lifecycle.progress(row.id, { step, total, preview, attempt: row.attempts }), signal: control.abort.signal },
    })),
  );
  try {
    return await Promise.all(jobs.map((j, i) => finish(ctx, j, outputs[i]!, owner, { startedAt, batchSize: size })));
  } finally {
    // The engine has read the files (or will not): the cache may evict them again.
    if (!('err' in loras)) await loras.release().catch(() => undefined);
  }
}

/** One job of a batch, from its engine output to its end. */
async function finish(
  ctx: RunJobContext,
  { row, job, control }: JobToRun,
  engineOutput: Promise<EngineOutput>,
  owner: string,
  batch: { startedAt: number; batchSize: number },
): Promise<'done' | 'retry'> {
  const { id } = row;
  const { params } = job;
  try {
    if (control.reason) throw new Cancelled(control.reason);
    const out = await engineOutput;
    const t0 = Date.now();
    const bytes = await encodeImage(out.image, {
      format: params.image_format,
      quality: params.quality,
      metadata: ctx.imageMetadata ? generationMetadata(row.model, params, out.seed) : null,
    });
    const encodeMs = Date.now() - t0;
    const key = outputKey(id, params.image_format);
    await ctx.storage.put(key, bytes, CONTENT_TYPES[params.image_format]);
    const timings = { ...out.timings, encode_ms: encodeMs, batch_size: batch.batchSize };
    const generationTimeS = (Date.now() - batch.startedAt) / 1000;
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
    // The engine's answer is awaited even when the job ended before it (a cancel seen
    // first), so its rejection is never left unhandled.
    engineOutput.catch(() => undefined);
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
