/**
 * The embedded default's durable queue: jobs are rows of the `requests` table (SQLite),
 * taken in order by one engine at a time. Credits are reserved before a row exists and
 * every terminal state settles or releases them exactly once (the ledger is keyed by
 * request id, so a replay cannot charge twice or lose a refund).
 *
 *   submit ─▶ reserve ─▶ row QUEUED ─▶ claim (PROCESSING) ─▶ engine ─▶ encode ─▶ store output
 *               │ 406         │ cancel                        │ crash (async: retried)
 *               ▼             ▼                               ▼
 *           (no row)   CANCELLED + release      COMPLETED + settle | FAILED + release
 *                                                  └──── webhook (one terminal event) ────┘
 *
 * Reference pixels of asynchronous (v2) requests are written to storage, so a restart
 * resumes their queued work; synchronous (v1) requests keep them in memory only — after a
 * restart their client is gone, so they are failed and released.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import sharp from 'sharp';
import { ApiError } from '../gateway/errors.js';
import type { Metrics } from '../gateway/metrics.js';
import type { ImageFormat, ResolvedParams, RgbImage } from '../contract/types.js';
import type { JobBus, CancelReason, JobOutcome, ProgressEvent } from './events.js';
import type { Database } from '../store/schema.js';
import {
  IdempotencyKeyTaken,
  createRequest,
  claimNext,
  transition,
  recoverOnStartup,
  countByStatus,
  queuePosition,
  getRequest,
  type RequestRow,
} from '../store/requests.js';
import { reserve, settle, release, balance } from '../accounts/ledger.js';
import { encodeImage } from '../images/encode.js';
import { generationMetadata as metadataFor } from '../images/generation-metadata.js';
import type { EngineProcess } from '../worker/engine-process.js';
import { Cancelled, EngineCrashed } from '../worker/engine-process.js';
import type { OutputStorage } from '../storage/types.js';
import type { Webhooks } from '../webhooks/dispatcher.js';

export interface SubmitSpec {
  id: string;
  accountId: string;
  keyId: string;
  /** 'v1' (synchronous) or 'v2' (asynchronous, durable). */
  route: string;
  params: ResolvedParams;
  /** `params` as stored: data: URIs replaced by a short digest (no image bytes in rows). */
  storedParams: Record<string, unknown>;
  images: RgbImage[];
  priceMicro: number;
  webhookUrl?: string | null;
  idempotencyKey?: string | null;
  idempotencyHash?: string | null;
}

export type SubmitResult =
  | { ok: true; row: RequestRow }
  | { ok: false; reason: 'insufficient_credits'; balanceMicro: number }
  | { ok: false; reason: 'duplicate'; existing: RequestRow };

export interface LocalQueueOptions {
  db: Kysely<Database>;
  bus: JobBus;
  engine: EngineProcess;
  metrics: Metrics;
  logger: Logger;
  storage: OutputStorage;
  webhooks: Webhooks;
  workerId: string;
  imageMetadata: boolean;
  /** Engine starts a job may take before it is failed (crashes of async jobs are retried). */
  maxAttempts: number;
  retentionMs: number;
}

export const CONTENT_TYPES: Record<ImageFormat, string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };
export const EXTENSIONS: Record<ImageFormat, string> = { png: 'png', jpeg: 'jpg', webp: 'webp' };

const outputKey = (id: string, f: ImageFormat) => `outputs/${id}.${EXTENSIONS[f]}`;
const inputKey = (id: string, i: number) => `inputs/${id}/${i}.png`;

export class LocalQueue {
  private readonly inputs = new Map<string, { spec: SubmitSpec; enqueuedAt: number }>();
  private readonly running = new Map<string, { abort: AbortController; reason?: CancelReason }>();
  private readonly progress = new Map<string, ProgressEvent>();
  private pumping = false;
  private stopped = false;

  constructor(private readonly o: LocalQueueOptions) {}

  /**
   * Recovers what a previous run left behind, then starts taking work: rows left
   * PROCESSING are retried (async) or failed and released (sync, or out of attempts);
   * queued sync rows are failed and released; queued async rows simply run.
   */
  async start(): Promise<void> {
    const { requeued, failed } = await recoverOnStartup(this.o.db, { maxAttempts: this.o.maxAttempts });
    for (const id of failed) await this.afterFailure(id, new ApiError('engine_failed', 'the server stopped while this request was running'));
    const queued = await this.o.db.selectFrom('requests').select(['id', 'route']).where('status', '=', 'QUEUED').execute();
    for (const { id, route } of queued) {
      if (route === 'v2' || this.inputs.has(id)) continue;
      if (await transition(this.o.db, id, ['QUEUED'], 'FAILED', { error_code: 'engine_failed', error_message: 'the server restarted before this request ran' })) {
        await this.afterFailure(id, new ApiError('engine_failed', 'the server restarted before this request ran'));
      }
    }
    if (requeued.length > 0) this.o.logger.info({ requeued: requeued.length }, 'resuming requests from the previous run');
    await this.refreshGauges();
    this.wake();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Resolves once no job is running (used when shutting down, after stop()). */
  async idle(): Promise<void> {
    while (this.running.size > 0 || this.pumping) await new Promise((r) => setTimeout(r, 20));
  }

  /** Reserves the price and queues the job (406 when short; the existing row for a taken idempotency key). */
  async submit(spec: SubmitSpec): Promise<SubmitResult> {
    const r = await reserve(this.o.db, { accountId: spec.accountId, requestId: spec.id, priceMicro: spec.priceMicro });
    if (!r.ok) return { ok: false, reason: 'insufficient_credits', balanceMicro: r.balanceMicro };
    this.inputs.set(spec.id, { spec, enqueuedAt: Date.now() });
    let row: RequestRow;
    try {
      if (spec.route === 'v2') {
        await Promise.all(spec.images.map(async (img, i) => this.o.storage.put(inputKey(spec.id, i), await rgbToPng(img), 'image/png')));
      }
      row = await createRequest(this.o.db, {
        id: spec.id,
        account_id: spec.accountId,
        key_id: spec.keyId,
        route: spec.route,
        params: spec.storedParams,
        seed: spec.params.seed,
        width: spec.params.width,
        height: spec.params.height,
        price_micro: spec.priceMicro,
        webhook_url: spec.webhookUrl ?? null,
        idempotency_key: spec.idempotencyKey ?? null,
        idempotency_hash: spec.idempotencyHash ?? null,
        retention_ms: this.o.retentionMs,
      });
    } catch (err) {
      this.inputs.delete(spec.id);
      await release(this.o.db, spec.id);
      await this.deleteInputs(spec.id, spec.images.length);
      if (err instanceof IdempotencyKeyTaken) return { ok: false, reason: 'duplicate', existing: err.existing };
      throw err;
    }
    await this.refreshGauges();
    this.wake();
    return { ok: true, row };
  }

  async position(id: string): Promise<number> {
    return queuePosition(this.o.db, id);
  }

  /** The last progress of a running job (null when none is known). */
  lastProgress(id: string): ProgressEvent | null {
    return this.progress.get(id) ?? null;
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
      await release(this.o.db, id);
      this.o.metrics.jobsFinished.inc({ status: 'CANCELLED' });
      await this.finish(id, { status: 'CANCELLED', reason });
      await this.refreshGauges();
      return true;
    }
    return false;
  }

  /** Starts the next job when the engine is free. Safe to call any time. */
  wake(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    void this.pump()
      .catch((err) => this.o.logger.error({ err }, 'queue pump failed'))
      .finally(() => {
        this.pumping = false;
      });
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.o.engine.state === 'READY' && this.running.size === 0) {
      const row = await claimNext(this.o.db, this.o.workerId, 10 * 60_000);
      if (!row) return;
      const input = this.inputs.get(row.id) ?? (await this.restore(row));
      if (!input) {
        await this.finishFailed(row.id, new ApiError('engine_failed', 'the request lost its inputs before it ran'));
        continue;
      }
      await this.run(row, input.spec, input.enqueuedAt);
    }
  }

  /** Rebuilds a durable (v2) job from its row and stored reference pixels. */
  private async restore(row: RequestRow): Promise<{ spec: SubmitSpec; enqueuedAt: number } | null> {
    if (row.route !== 'v2') return null;
    const params = JSON.parse(row.params) as ResolvedParams;
    const images: RgbImage[] = [];
    for (let i = 0; i < params.image_urls.length; i++) {
      const png = await this.o.storage.get(inputKey(row.id, i));
      if (!png) return null;
      const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
      images.push({ width: info.width, height: info.height, data });
    }
    const spec: SubmitSpec = {
      id: row.id,
      accountId: row.account_id,
      keyId: row.key_id,
      route: row.route,
      params,
      storedParams: params as unknown as Record<string, unknown>,
      images,
      priceMicro: Number(row.price_micro),
      webhookUrl: row.webhook_url,
    };
    const entry = { spec, enqueuedAt: Number(row.created_at) };
    this.inputs.set(row.id, entry);
    return entry;
  }

  private async run(row: RequestRow, spec: SubmitSpec, enqueuedAt: number): Promise<void> {
    const { id, params } = spec;
    const abort = new AbortController();
    const entry: { abort: AbortController; reason?: CancelReason } = { abort };
    this.running.set(id, entry);
    const startedAt = Date.now();
    this.o.metrics.stageSeconds.observe({ stage: 'queue' }, (startedAt - enqueuedAt) / 1000);
    await this.refreshGauges();
    try {
      const out = await this.o.engine.generate(
        { id, params, images: spec.images, preview: spec.route === 'v2' },
        {
          onProgress: (step, total, preview) => {
            const ev = { step, total, preview };
            this.progress.set(id, ev);
            this.o.bus.progress(id, ev);
          },
          signal: abort.signal,
        },
      );
      const t0 = Date.now();
      const bytes = await encodeImage(out.image, {
        format: params.image_format,
        quality: params.quality,
        metadata: this.o.imageMetadata ? metadataFor(params, out.seed) : null,
      });
      const encodeMs = Date.now() - t0;
      const key = outputKey(id, params.image_format);
      await this.o.storage.put(key, bytes, CONTENT_TYPES[params.image_format]);
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
        timings: JSON.stringify({ ...timings, generation_s: generationTimeS }),
        output_format: params.image_format,
        output_key: key,
      });
      if (!moved) throw new ApiError('internal', 'request left PROCESSING while running');
      await settle(this.o.db, id);
      const balanceMicro = await balance(this.o.db, spec.accountId);
      this.o.metrics.jobsFinished.inc({ status: 'COMPLETED' });
      await this.finish(id, {
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
        await this.finish(id, { status: 'CANCELLED', reason });
      } else {
        const apiErr = err instanceof ApiError ? err : new ApiError('internal', undefined, { cause: err });
        if (!(err instanceof ApiError)) this.o.logger.error({ err, request_id: id }, 'job failed');
        // An asynchronous job whose engine died is tried again, up to maxAttempts starts.
        if (err instanceof EngineCrashed && spec.route === 'v2' && row.attempts < this.o.maxAttempts) {
          if (await transition(this.o.db, id, ['PROCESSING'], 'QUEUED')) {
            this.o.logger.warn({ request_id: id, attempt: row.attempts }, 'engine failed; request requeued');
            this.progress.delete(id);
            return;
          }
        }
        await this.finishFailed(id, apiErr);
      }
    } finally {
      this.running.delete(id);
      await this.refreshGauges();
    }
  }

  private async finishFailed(id: string, error: ApiError): Promise<void> {
    await transition(this.o.db, id, ['PROCESSING', 'QUEUED'], 'FAILED', { error_code: error.code, error_message: error.message });
    await this.afterFailure(id, error);
  }

  private async afterFailure(id: string, error: ApiError): Promise<void> {
    await release(this.o.db, id);
    this.o.metrics.jobsFinished.inc({ status: 'FAILED' });
    await this.finish(id, { status: 'FAILED', error });
  }

  private async finish(id: string, outcome: JobOutcome): Promise<void> {
    const input = this.inputs.get(id);
    this.inputs.delete(id);
    this.progress.delete(id);
    this.o.bus.finish(id, outcome);
    const row = await getRequest(this.o.db, id);
    if (row?.route === 'v2') {
      const params = input?.spec.params ?? (JSON.parse(row.params) as ResolvedParams);
      await this.deleteInputs(id, params.image_urls.length);
    }
    if (row?.webhook_url) await this.o.webhooks.enqueue(row);
  }

  private async deleteInputs(id: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) await this.o.storage.delete(inputKey(id, i)).catch(() => undefined);
  }

  private async refreshGauges(): Promise<void> {
    const counts = await countByStatus(this.o.db);
    this.o.metrics.jobsWaiting.set(counts.QUEUED ?? 0);
    this.o.metrics.jobsRunning.set(counts.PROCESSING ?? 0);
  }
}

async function rgbToPng(img: RgbImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
}
