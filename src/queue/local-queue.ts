/**
 * The embedded default's durable queue: jobs are rows of the `requests` table (SQLite),
 * taken in order by one engine at a time. Credits are reserved before a row exists and
 * every terminal state settles or releases them exactly once (the ledger is keyed by
 * request id, so a replay cannot charge twice or lose a refund).
 *
 *   submit ─▶ reserve credits ─▶ row QUEUED ─▶ claim (PROCESSING) ─▶ engine ─▶ encode
 *                  │ 406                 │ cancel                      │
 *                  ▼                     ▼                             ▼
 *              (no row)          CANCELLED + release     COMPLETED + settle | FAILED + release
 *
 * Reference pixels travel in memory next to the row (never in the database). A row whose
 * pixels are gone (the process restarted) is failed and released on start-up: only a
 * waiting synchronous client could have used its result, and it is gone too.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ApiError } from '../gateway/errors.js';
import type { Metrics } from '../gateway/metrics.js';
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import type { JobBus, CancelReason, JobOutcome } from './events.js';
import type { Database } from '../store/schema.js';
import { createRequest, claimNext, transition, recoverOnStartup, countByStatus, queuePosition } from '../store/requests.js';
import { reserve, settle, release, balance } from '../accounts/ledger.js';
import { encodeImage } from '../images/encode.js';
import type { EngineProcess } from '../worker/engine-process.js';
import { Cancelled } from '../worker/engine-process.js';


export interface SubmitSpec {
  id: string;
  accountId: string;
  keyId: string;
  route: string;
  params: ResolvedParams;
  /** `params` as stored: data: URIs replaced by a short digest (no image bytes in rows). */
  storedParams: Record<string, unknown>;
  images: RgbImage[];
  priceMicro: number;
  preview: boolean;
}

export type SubmitResult = { ok: true } | { ok: false; balanceMicro: number };

export interface LocalQueueOptions {
  db: Kysely<Database>;
  bus: JobBus;
  engine: EngineProcess;
  metrics: Metrics;
  logger: Logger;
  workerId: string;
  imageMetadata: boolean;
  maxAttempts: number;
}

const CONTENT_TYPES = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' } as const;

export class LocalQueue {
  private readonly inputs = new Map<string, { spec: SubmitSpec; enqueuedAt: number }>();
  private readonly running = new Map<string, { abort: AbortController; reason?: CancelReason }>();
  private pumping = false;
  private stopped = false;

  constructor(private readonly o: LocalQueueOptions) {}

  /** Fails and releases what a previous run left behind, then starts taking work. */
  async start(): Promise<void> {
    const { failed } = await recoverOnStartup(this.o.db, { maxAttempts: 0 });
    for (const id of failed) await release(this.o.db, id);
    const stale = await this.o.db
      .selectFrom('requests')
      .select('id')
      .where('status', '=', 'QUEUED')
      .execute();
    for (const { id } of stale) {
      if (this.inputs.has(id)) continue;
      if (await transition(this.o.db, id, ['QUEUED'], 'FAILED', { error_code: 'engine_failed', error_message: 'the server restarted before this request ran' })) {
        await release(this.o.db, id);
      }
    }
    await this.refreshGauges();
    this.wake();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Reserves the price and queues the job; `{ok:false}` when the balance is short (406). */
  async submit(spec: SubmitSpec): Promise<SubmitResult> {
    const r = await reserve(this.o.db, { accountId: spec.accountId, requestId: spec.id, priceMicro: spec.priceMicro });
    if (!r.ok) return { ok: false, balanceMicro: r.balanceMicro };
    this.inputs.set(spec.id, { spec, enqueuedAt: Date.now() });
    try {
      await createRequest(this.o.db, {
        id: spec.id,
        account_id: spec.accountId,
        key_id: spec.keyId,
        route: spec.route,
        params: spec.storedParams,
        seed: spec.params.seed,
        width: spec.params.width,
        height: spec.params.height,
        price_micro: spec.priceMicro,
      });
    } catch (err) {
      this.inputs.delete(spec.id);
      await release(this.o.db, spec.id);
      throw err;
    }
    await this.refreshGauges();
    this.wake();
    return { ok: true };
  }

  async position(id: string): Promise<number> {
    return queuePosition(this.o.db, id);
  }

  /** Cancels a queued or running job. Returns false when it already finished. */
  async cancel(id: string, reason: CancelReason): Promise<boolean> {
    const run = this.running.get(id);
    if (run) {
      run.reason = reason;
      run.abort.abort();
      return true;
    }
    if (await transition(this.o.db, id, ['QUEUED'], 'CANCELLED', { error_code: 'cancelled', error_message: `cancelled (${reason})` })) {
      this.inputs.delete(id);
      await release(this.o.db, id);
      this.o.metrics.jobsFinished.inc({ status: 'CANCELLED' });
      this.o.bus.finish(id, { status: 'CANCELLED', reason });
      await this.refreshGauges();
      return true;
    }
    return false;
  }

  /** Starts the next job when the engine is free. Safe to call any time. */
  wake(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    void this.pump().finally(() => {
      this.pumping = false;
    });
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.o.engine.state === 'READY' && this.running.size === 0) {
      const row = await claimNext(this.o.db, this.o.workerId, 10 * 60_000);
      if (!row) return;
      const input = this.inputs.get(row.id);
      if (!input) {
        // Pixels lost (restart) or the row came from elsewhere: fail it cleanly.
        await this.finishFailed(row.id, new ApiError('engine_failed', 'the request lost its inputs before it ran'));
        continue;
      }
      await this.run(input.spec, input.enqueuedAt);
    }
  }

  private async run(spec: SubmitSpec, enqueuedAt: number): Promise<void> {
    const { id, params } = spec;
    const abort = new AbortController();
    const entry: { abort: AbortController; reason?: CancelReason } = { abort };
    this.running.set(id, entry);
    const startedAt = Date.now();
    this.o.metrics.stageSeconds.observe({ stage: 'queue' }, (startedAt - enqueuedAt) / 1000);
    await this.refreshGauges();
    try {
      const out = await this.o.engine.generate(
        { id, params, images: spec.images, preview: spec.preview },
        { onProgress: (step, total, preview) => this.o.bus.progress(id, { step, total, preview }), signal: abort.signal },
      );
      const t0 = Date.now();
      const bytes = await encodeImage(out.image, {
        format: params.image_format,
        quality: params.quality,
        metadata: this.o.imageMetadata ? metadataFor(params, out.seed) : null,
      });
      const encodeMs = Date.now() - t0;
      const timings = { ...out.timings, encode_ms: encodeMs };
      const generationTimeS = (Date.now() - startedAt) / 1000;
      for (const stage of ['text', 'denoise', 'decode'] as const) {
        const ms = out.timings[`${stage}_ms`];
        if (typeof ms === 'number') this.o.metrics.stageSeconds.observe({ stage }, ms / 1000);
      }
      this.o.metrics.stageSeconds.observe({ stage: 'encode' }, encodeMs / 1000);
      this.o.metrics.stageSeconds.observe({ stage: 'total' }, generationTimeS);
      // A cancel that raced the end of generation wins: the client is gone or timed out.
      if (entry.reason) throw new Cancelled(entry.reason);
      const moved = await transition(this.o.db, id, ['PROCESSING'], 'COMPLETED', {
        cost_micro: spec.priceMicro,
        timings: JSON.stringify(timings),
        output_format: params.image_format,
      });
      if (!moved) throw new ApiError('internal', 'request left PROCESSING while running');
      await settle(this.o.db, id);
      const balanceMicro = await balance(this.o.db, spec.accountId);
      this.o.metrics.jobsFinished.inc({ status: 'COMPLETED' });
      this.finish(id, {
        status: 'COMPLETED',
        output: {
          bytes,
          format: params.image_format,
          contentType: CONTENT_TYPES[params.image_format],
          width: out.image.width,
          height: out.image.height,
          seed: out.seed,
        },
        costMicro: spec.priceMicro,
        balanceMicro,
        generationTimeS,
        timings,
      });
    } catch (err) {
      if (err instanceof Cancelled || entry.reason) {
        const reason = entry.reason ?? 'user';
        await transition(this.o.db, id, ['PROCESSING'], 'CANCELLED', { error_code: 'cancelled', error_message: `cancelled (${reason})` });
        await release(this.o.db, id);
        this.o.metrics.jobsFinished.inc({ status: 'CANCELLED' });
        this.finish(id, { status: 'CANCELLED', reason });
      } else {
        const apiErr = err instanceof ApiError ? err : new ApiError('internal', undefined, { cause: err });
        if (!(err instanceof ApiError)) this.o.logger.error({ err, request_id: id }, 'job failed');
        await this.finishFailed(id, apiErr);
      }
    } finally {
      this.running.delete(id);
      await this.refreshGauges();
    }
  }

  private async finishFailed(id: string, error: ApiError): Promise<void> {
    await transition(this.o.db, id, ['PROCESSING', 'QUEUED'], 'FAILED', { error_code: error.code, error_message: error.message });
    await release(this.o.db, id);
    this.o.metrics.jobsFinished.inc({ status: 'FAILED' });
    this.finish(id, { status: 'FAILED', error });
  }

  private finish(id: string, outcome: JobOutcome): void {
    this.inputs.delete(id);
    this.o.bus.finish(id, outcome);
  }

  private async refreshGauges(): Promise<void> {
    const counts = await countByStatus(this.o.db);
    this.o.metrics.jobsWaiting.set(counts.QUEUED ?? 0);
    this.o.metrics.jobsRunning.set(counts.PROCESSING ?? 0);
  }
}

/** The generation parameters written into the image (PNG text chunk, EXIF). */
function metadataFor(p: ResolvedParams, seed: number): Record<string, string> {
  return {
    parameters: JSON.stringify({
      model: 'flux-2-klein-4b',
      prompt: p.prompt,
      negative_prompt: p.cfg > 1 ? p.negative_prompt : undefined,
      seed,
      cfg: p.cfg,
      sampler: p.sampler,
      steps: p.steps,
      width: p.width,
      height: p.height,
      go_fast: p.go_fast,
      reference_images: p.image_urls.length,
    }),
    software: 'klein-serve',
  };
}
