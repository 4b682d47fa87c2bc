/**
 * The embedded default's durable queue: jobs are rows of the `requests` table (SQLite),
 * taken in order by the engines this process supervises, one per served model (contract
 * §6): each engine takes only its model's rows, so a busy model never holds up another.
 * Submission is submit.ts, the run is worker/run-job.ts, every end is lifecycle.ts (shared
 * with the fleet's workers).
 *
 * When a model's engine is idle the queue takes its oldest queued request and, up to the engine's
 * max_batch (KLEIN_MAX_BATCH), the later queued ones it may share a batch with
 * (queue/batching.ts), and sends them to the engine together; requests that arrive while a
 * batch runs wait for the next one.
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
import type { RgbImage } from '../contract/types.js';
import { ApiError } from '../contract/errors.js';
import type { Limiter } from '../limits/limits.js';
import type { Metrics } from '../metrics/metrics.js';
import { claimBatch, claimNext, oldestQueued, queuePosition, type RequestRow } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import type { EngineProcess } from './engine-process.js';
import type { LoraFiles } from './lora-files.js';
import { inputsFromRow, loadJobInputs, type JobInputs } from '../queue/job-inputs.js';
import { JobControl, runBatch, type JobToRun } from './run-job.js';
import { pickBatch, pickWindow, type Candidate } from '../queue/batching.js';
import type { CancelReason, JobBus, JobOutcome, LoggedStep, ProgressEvent } from '../queue/events.js';
import { Lifecycle, lostInputs, slotKey } from '../queue/lifecycle.js';
import { queueDepths } from '../queue/depth.js';
import { repairAndLog } from '../queue/repair.js';
import { submitRequest } from '../queue/submit.js';
import type { QueueDepth } from '../metrics/metrics.js';
import { loraSupportOf, type JobQueue, type LoraSupport, type Readiness, type SubmitResult, type SubmitSpec } from '../queue/types.js';

export interface LocalQueueOptions {
  db: Kysely<Database>;
  bus: JobBus;
  /** One engine per served model, by slug. */
  engines: ReadonlyMap<string, EngineProcess>;
  metrics: Metrics;
  logger: Logger;
  storage: OutputStorage;
  limiter: Limiter;
  workerId: string;
  imageMetadata: boolean;
  /** Engine starts a job may take before it is failed (crashes of async jobs are retried). */
  maxAttempts: number;
  retentionMs: number;
  /** This process's LoRA files (contract §7). */
  loras: LoraFiles;
  /** Called when a webhook delivery was recorded (wakes the dispatcher). */
  onWebhook?: () => void;
}

export class LocalQueue implements JobQueue {
  /** Reference pixels of jobs submitted in this process, until they end. */
  private readonly images = new Map<string, RgbImage[]>();
  private readonly running = new Map<string, JobControl>();
  /** The models whose engine runs a batch now. */
  private readonly busyModels = new Set<string>();
  private readonly lifecycle: Lifecycle;
  /** The models whose pump is running. */
  private readonly pumping = new Set<string>();
  private stopped = false;

  constructor(private readonly options: LocalQueueOptions) {
    this.lifecycle = new Lifecycle({ db: options.db, storage: options.storage, metrics: options.metrics, logger: options.logger, limiter: options.limiter, notifier: options.bus, onWebhook: options.onWebhook });
  }

  /**
   * Recovers what a previous run left behind, then starts taking work: rows left
   * PROCESSING are retried (async) or failed and released (sync, or out of attempts);
   * queued sync rows are failed and released (their callers are gone); held charges are
   * released (no answer of the previous run can still be delivered) and whatever else a
   * crash left open is closed (repair.ts); queued async rows run, and hold their
   * concurrency slots again.
   */
  async start(): Promise<void> {
    const requeued = await this.lifecycle.recover(this.options.maxAttempts);
    const queued = await this.options.db.selectFrom('requests').select(['id', 'route', 'key_id', 'model']).where('status', '=', 'QUEUED').execute();
    for (const { id, route, key_id, model } of queued) {
      if (this.images.has(id)) continue;
      if (!this.options.engines.has(model)) {
        await this.lifecycle.failed(id, new ApiError('engine_failed', `the server restarted without the model ${model}`), ['QUEUED']);
        continue;
      }
      if (route === 'v2') {
        await this.options.limiter.acquire(slotKey(key_id), Number.MAX_SAFE_INTEGER, id, this.options.retentionMs);
        continue;
      }
      await this.lifecycle.failed(id, new ApiError('engine_failed', 'the server restarted before this request ran'), ['QUEUED']);
    }
    await repairAndLog(this.options.db, this.options.storage, this.options.logger, { releaseAllHeld: true, orphans: true });
    if (requeued.length > 0) this.options.logger.info({ requeued: requeued.length }, 'resuming requests from the previous run');
    this.wake();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Resolves once no job is running (used when shutting down, after stop()). */
  async idle(): Promise<void> {
    while (this.running.size > 0 || this.pumping.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  async submit(spec: SubmitSpec): Promise<SubmitResult> {
    // Async requests must survive a restart, so their pixels go to storage; sync ones stay in memory.
    this.images.set(spec.id, spec.images);
    const r = await submitRequest({ db: this.options.db, storage: this.options.storage, retentionMs: this.options.retentionMs }, spec, spec.route === 'v2');
    if (!r.ok) {
      this.images.delete(spec.id);
      return r;
    }
    this.wake(spec.model);
    return r;
  }

  async position(id: string): Promise<number> {
    return queuePosition(this.options.db, id);
  }

  async lastProgress(id: string): Promise<ProgressEvent | null> {
    return this.options.bus.lastProgress(id);
  }

  waitFor(id: string): Promise<JobOutcome> {
    return this.options.bus.waitFor(id);
  }

  async progressLog(id: string): Promise<LoggedStep[]> {
    return this.options.bus.history(id);
  }

  onProgress(id: string, fn: (ev: ProgressEvent) => void): () => void {
    return this.options.bus.onProgress(id, fn);
  }

  readiness(model: string): Readiness {
    const engine = this.options.engines.get(model);
    if (!engine) return { status: 'UNHEALTHY', reason: `the model ${model} is not served here` };
    const s = engine.state;
    if (s === 'READY' || s === 'BUSY' || s === 'STARTING') return { status: s };
    return { status: 'UNHEALTHY', reason: engine.lastError ?? `engine ${s.toLowerCase()}` };
  }

  loraSupport(model: string): LoraSupport {
    return loraSupportOf(this.options.engines.get(model)?.facts?.capabilities);
  }

  async readinessNow(model: string): Promise<Readiness> {
    return this.readiness(model);
  }

  async describe(): Promise<Record<string, unknown>> {
    const models: Record<string, unknown> = {};
    for (const [slug, engine] of this.options.engines) models[slug] = { engine: engine.facts ?? null, engine_restarts: engine.restarts };
    return { models };
  }

  async depth(): Promise<ReadonlyMap<string, QueueDepth>> {
    return queueDepths(this.options.db, [...this.options.engines.keys()]);
  }

  async cancel(id: string, reason: CancelReason): Promise<boolean> {
    const run = this.running.get(id);
    if (run) {
      run.cancel(reason);
      return true;
    }
    if (await this.lifecycle.cancelled(id, reason, ['QUEUED'])) {
      this.images.delete(id);
      return true;
    }
    return false;
  }

  /** Starts the next job of `model` (of every model when absent) whose engine is free. Safe to call any time. */
  wake(model?: string): void {
    for (const [slug, engine] of this.options.engines) {
      if (model !== undefined && slug !== model) continue;
      if (this.pumping.has(slug) || this.stopped) continue;
      this.pumping.add(slug);
      void this.pump(slug, engine)
        .catch((err) => this.options.logger.error({ err, model: slug }, 'queue pump failed'))
        .finally(() => {
          this.pumping.delete(slug);
        });
    }
  }

  private async pump(model: string, engine: EngineProcess): Promise<void> {
    while (!this.stopped && engine.state === 'READY' && !this.runningOn(model)) {
      const claimed = await this.claim(model, engine);
      if (!claimed) return;
      const jobs: JobToRun[] = [];
      for (const { row, inputs } of claimed) {
        if (inputs) jobs.push({ row, job: inputs, control: new JobControl() });
        else await this.lifecycle.failed(row.id, lostInputs(), ['PROCESSING']);
      }
      if (jobs.length > 0) await this.run(jobs, model, engine);
    }
  }

  /** Whether a batch of `model` runs now (each engine runs one batch at a time). */
  private runningOn(model: string): boolean {
    return this.busyModels.has(model);
  }

  /**
   * Claims the next batch: the oldest queued request and the later ones it may run with
   * (none when the engine runs one job at a time). Null when nothing is queued; an empty
   * list when the rows picked were taken meanwhile (then the pump looks again).
   */
  private async claim(model: string, engine: EngineProcess): Promise<Candidate[] | null> {
    const { db, workerId } = this.options;
    const maxBatch = engine.maxBatch;
    if (maxBatch <= 1) {
      const row = await claimNext(db, workerId, LEASE_MS, Date.now(), model);
      return row ? [{ row, inputs: await this.inputsOf(row) }] : null;
    }
    const rows = await oldestQueued(db, pickWindow(maxBatch), model);
    const head = rows[0];
    if (!head) return null;
    const picked = await pickBatch({ row: head, inputs: await this.inputsOf(head) }, rows.slice(1), maxBatch, (r) => this.inputsOf(r));
    const inputs = new Map(picked.map((c) => [c.row.id, c.inputs]));
    const taken = await claimBatch(db, [...inputs.keys()], workerId, LEASE_MS);
    return taken.map((row) => ({ row, inputs: inputs.get(row.id) ?? null }));
  }

  /** In memory for jobs submitted here; from storage for async jobs of a previous run. */
  private async inputsOf(row: RequestRow): Promise<JobInputs | null> {
    const images = this.images.get(row.id);
    if (images) return inputsFromRow(row, images);
    return row.route === 'v2' ? loadJobInputs(row, this.options.storage) : null;
  }

  private async run(jobs: JobToRun[], model: string, engine: EngineProcess): Promise<void> {
    for (const j of jobs) this.running.set(j.row.id, j.control);
    this.busyModels.add(model);
    try {
      const ends = await runBatch(
        { lifecycle: this.lifecycle, engine, storage: this.options.storage, metrics: this.options.metrics, logger: this.options.logger, imageMetadata: this.options.imageMetadata, maxAttempts: this.options.maxAttempts, loras: this.options.loras },
        jobs,
        this.options.workerId,
      );
      jobs.forEach((j, i) => {
        if (ends[i] === 'done') this.images.delete(j.row.id);
      });
    } finally {
      for (const j of jobs) this.running.delete(j.row.id);
      this.busyModels.delete(model);
    }
  }
}

/** How long a claim of the embedded queue is leased (its rows are recovered at start-up). */
const LEASE_MS = 10 * 60_000;
