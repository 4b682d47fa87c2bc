/**
 * A worker of the fleet: one engine (one GPU) taking jobs from the BullMQ queue, one at a
 * time. Jobs carry only the request id; the row (PostgreSQL) and the stored reference
 * pixels (S3 or a shared disk) hold the rest.
 *
 *   BullMQ job {id} ─▶ claimById (QUEUED or a dead worker's PROCESSING → ours)
 *                   ─▶ load inputs ─▶ runJob (engine, encode, store, end: lifecycle.ts)
 *                   ─▶ 'retry' (async request, engine crashed): throw, BullMQ retries it
 *
 * BullMQ holds the job under a lock that this process renews; if the process dies, the
 * lock expires, BullMQ's stall check puts the job back, and another worker claims the row.
 * Settlement stays exactly-once: the old holder's writes are guarded by worker_id and the
 * ledger is keyed by request id.
 *
 * The worker takes jobs only while its engine is READY (paused while it starts or
 * restarts), drains on SIGTERM (finishes its job, takes no other), and can leave after an
 * idle period (scale to zero).
 */
import { hostname } from 'node:os';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ApiError } from '../gateway/errors.js';
import type { Limiter } from '../gateway/limits.js';
import { countEngineRestarts, type Metrics } from '../gateway/metrics.js';
import { Lifecycle, lostInputs } from '../queue/lifecycle.js';
import { QUEUE_NAME, type ConnOptions, type RedisKeys } from '../queue/redis/connection.js';
import { RedisNotifier } from '../queue/redis/events.js';
import { FleetMember, type WorkerState } from '../queue/redis/fleet.js';
import { claimById } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import type { EngineProcess } from './engine-process.js';
import { loadJobInputs } from './load-job.js';
import { JobControl, runJob } from './run-job.js';
import type { CancelReason } from '../queue/events.js';

export interface JobData {
  id: string;
  route: string;
}

export interface FleetWorkerOptions {
  id: string;
  gpu: string | null;
  model: string;
  engine: EngineProcess;
  db: Kysely<Database>;
  storage: OutputStorage;
  metrics: Metrics;
  logger: Logger;
  limiter: Limiter;
  /** A connection for commands (publishing, heartbeats). */
  redis: Redis;
  /** Connection options for BullMQ's own connections (see connection.ts: blockingOptions). */
  bullConnection: ConnOptions;
  keys: RedisKeys;
  imageMetadata: boolean;
  maxAttempts: number;
  /** BullMQ lock: how long a silent worker keeps its job before another may take it. */
  lockMs: number;
  /** Leave after this long without a job (0: never). */
  idleExitMs: number;
  onIdleExit?: () => void;
}

export class FleetWorker {
  private readonly lifecycle: Lifecycle;
  private readonly member: FleetMember;
  private worker: Worker<JobData> | null = null;
  private readonly running = new Map<string, JobControl>();
  private draining = false;
  private jobsDone = 0;
  private lastActive = Date.now();
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly startedAt = new Date().toISOString();

  constructor(private readonly o: FleetWorkerOptions) {
    this.lifecycle = new Lifecycle({
      db: o.db,
      storage: o.storage,
      metrics: o.metrics,
      logger: o.logger,
      limiter: o.limiter,
      notifier: new RedisNotifier(o.redis, o.keys, o.logger),
    });
    this.member = new FleetMember(o.redis, o.keys, () => this.info(), { intervalMs: 2000, ttlMs: 10_000 });
  }

  get id(): string {
    return this.o.id;
  }

  get state(): WorkerState {
    if (this.draining) return 'DRAINING';
    const s = this.o.engine.state;
    if (s === 'STOPPED') return 'STARTING';
    if (s === 'READY' && this.running.size > 0) return 'BUSY';
    return s;
  }

  private info() {
    return {
      id: this.o.id,
      host: hostname(),
      pid: process.pid,
      gpu: this.o.gpu,
      model: this.o.model,
      state: this.state,
      reason: this.state === 'UNHEALTHY' ? this.o.engine.lastError : null,
      job: [...this.running.keys()][0] ?? null,
      jobs_done: this.jobsDone,
      started_at: this.startedAt,
    };
  }

  /**
   * Starts the engine and the heartbeat. Jobs are taken through a BullMQ Worker that exists
   * only while the engine is READY: it is closed when the engine dies or restarts (after
   * its job has ended) and made anew once the engine is back, so a broken engine never
   * holds a job that a healthy worker could run.
   */
  start(): void {
    countEngineRestarts(this.o.engine, this.o.metrics);
    this.o.engine.onStateChange((s) => {
      void this.member.beat();
      if (this.draining) return;
      if (s === 'READY' && !this.worker) this.worker = this.newWorker();
      else if ((s === 'UNHEALTHY' || s === 'STARTING' || s === 'STOPPED') && this.worker) {
        const w = this.worker;
        this.worker = null;
        void w.close().catch((err: unknown) => this.o.logger.warn({ err }, 'closing the queue worker failed'));
      }
    });
    this.member.start();
    this.o.engine.start();
    if (this.o.idleExitMs > 0) {
      this.idleTimer = setInterval(() => {
        if (!this.draining && this.running.size === 0 && Date.now() - this.lastActive >= this.o.idleExitMs) {
          this.o.logger.info({ idle_s: Math.round((Date.now() - this.lastActive) / 1000) }, 'idle: leaving the fleet');
          this.o.onIdleExit?.();
        }
      }, Math.min(1000, this.o.idleExitMs));
      this.idleTimer.unref();
    }
  }

  private newWorker(): Worker<JobData> {
    const w = new Worker<JobData>(QUEUE_NAME, (job, token) => this.process(job, token), {
      connection: this.o.bullConnection,
      prefix: this.o.keys.bull,
      concurrency: 1,
      lockDuration: this.o.lockMs,
      stalledInterval: Math.max(1000, Math.round(this.o.lockMs / 2)),
      maxStalledCount: this.o.maxAttempts,
      drainDelay: 1,
    });
    w.on('error', (err) => this.o.logger.warn({ err: err.message }, 'queue connection error'));
    return w;
  }

  /** Stops the job asked for, if this worker runs it (the fleet's cancel messages). */
  cancel(id: string, reason: CancelReason): void {
    this.running.get(id)?.cancel(reason);
  }

  /**
   * SIGTERM: finish the running job, take no other, leave the fleet, stop the engine.
   * `force` (a second signal) cancels the running job instead of waiting for it.
   */
  async drain(force = false): Promise<void> {
    this.draining = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    void this.member.beat();
    if (force) for (const c of this.running.values()) c.cancel('shutdown');
    await this.worker?.close();
    await this.member.stop();
    await this.o.engine.stop();
  }

  private async process(job: Job<JobData>, _token?: string): Promise<void> {
    const { id } = job.data;
    // Registered before the claim, so a cancel that arrives meanwhile is not lost.
    const control = new JobControl();
    this.running.set(id, control);
    this.lastActive = Date.now();
    void this.member.beat();
    try {
      const claim = await claimById(this.o.db, id, this.o.id, { leaseMs: this.o.lockMs, maxAttempts: this.o.maxAttempts });
      if (!claim.claimed) {
        if (claim.reason === 'exhausted') {
          const n = claim.row.attempts;
          await this.lifecycle.failed(id, new ApiError('engine_failed', `the request failed after ${n} attempts (its worker or engine kept dying)`), ['QUEUED', 'PROCESSING']);
        }
        return;
      }
      const inputs = await loadJobInputs(claim.row, this.o.storage);
      if (!inputs) {
        await this.lifecycle.failed(id, lostInputs(), ['PROCESSING'], this.o.id);
        return;
      }
      const ctx = {
        lifecycle: this.lifecycle,
        engine: this.o.engine,
        storage: this.o.storage,
        metrics: this.o.metrics,
        logger: this.o.logger,
        imageMetadata: this.o.imageMetadata,
        maxAttempts: this.o.maxAttempts,
      };
      const r = await runJob(ctx, claim.row, inputs, this.o.id, control);
      if (r === 'retry') throw new Error('the engine died while running this request; it is retried');
      this.jobsDone += 1;
    } finally {
      this.running.delete(id);
      this.lastActive = Date.now();
      void this.member.beat();
    }
  }
}
