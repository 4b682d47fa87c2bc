/**
 * A worker of the fleet: one engine (one GPU) taking jobs from the BullMQ queue, one batch
 * at a time. Jobs carry only the request id; the row (PostgreSQL) and the stored reference
 * pixels (S3 or a shared disk) hold the rest.
 *
 *   BullMQ job {id} ─▶ claimById (QUEUED or a dead worker's PROCESSING → ours)
 *                   ─▶ load inputs ─▶ batch mates (below)
 *                   ─▶ runBatch (engine, encode, store, end: lifecycle.ts)
 *                   ─▶ 'retry' (async request, engine crashed): throw, BullMQ retries it;
 *                      a mate goes back to QUEUED and its job is added again
 *
 * Batch mates (the engine's max_batch > 1, KLEIN_MAX_BATCH): with the job BullMQ handed
 * over, the worker claims from the database up to max_batch − 1 later queued requests it
 * may share a batch with (queue/batching.ts), then removes each mate's BullMQ job, so no
 * other worker takes it. BullMQ refuses to remove a job another worker holds (it fetched
 * it and is about to claim the row): that mate is given back (`unclaim`) and left to it.
 * A mate has no BullMQ job while it runs: if this worker dies, the gateways' reconciler
 * finds its PROCESSING row without a job and without a live owner and queues it again.
 *
 * BullMQ holds the job under a lock that this process renews; if the process dies, the
 * lock expires, BullMQ's stall check (run by every live worker) puts the job back, the
 * worker whose check did it puts the row back to QUEUED (it waits, it does not run), and
 * another worker claims the row. Settlement stays exactly-once: the old holder's writes are
 * guarded by worker_id and the ledger is keyed by request id.
 *
 * How soon a dead worker's job runs again: its lock expires at most `lockMs` after the
 * kill (less the time since its last renewal), a stall check finds it within one or two
 * STALL_CHECK_MS later (BullMQ lets one check per interval run across the fleet), and an
 * idle worker takes it at once: 10.9 to 11.9 s with the default 10 s lock, killed just
 * after a renewal (test/distributed/takeover.test.ts; it holds the bound, 15 s).
 *
 * The worker takes jobs only while its engine is READY (paused while it starts or
 * restarts), drains on SIGTERM (finishes its job, takes no other), and can leave after an
 * idle period (scale to zero).
 */
import { hostname } from 'node:os';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ApiError } from '../contract/errors.js';
import type { Limiter } from '../limits/limits.js';
import { countEngineRestarts, type Metrics } from '../metrics/metrics.js';
import { Lifecycle, lostInputs } from '../queue/lifecycle.js';
import type { ConnOptions, RedisKeys } from '../redis/connection.js';
import { queueName, type JobData } from '../queue/redis/bull-job.js';
import type { LoraFiles } from './lora-files.js';
import { jobOptions } from '../queue/redis/distributed-queue.js';
import { RedisNotifier } from '../queue/redis/events.js';
import { FleetMember, type WorkerState } from '../queue/redis/fleet.js';
import { returnTakenBack } from '../queue/redis/reconciler.js';
import { claimBatch, claimById, oldestQueued, unclaim, type RequestRow } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import type { EngineProcess } from './engine-process.js';
import { loadJobInputs, type JobInputs } from '../queue/job-inputs.js';
import { pickBatch, pickWindow } from '../queue/batching.js';
import { JobControl, runBatch, type JobToRun } from './run-job.js';
import type { CancelReason } from '../queue/events.js';

/**
 * How often BullMQ's stall check runs (ms). It only takes back jobs whose lock has expired,
 * so checking often costs a cheap script call per worker per interval (one of them per
 * interval does the work) and never takes a live worker's job; what it bounds is how long
 * a dead worker's job waits after its lock expired.
 */
const STALL_CHECK_MS = 1000;

export interface FleetWorkerOptions {
  id: string;
  gpu: string | null;
  /** The served model's slug: the worker takes jobs from its queue only (contract §6). */
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
  /**
   * BullMQ lock: how long a silent worker keeps its job before another may take it. It is
   * renewed every quarter of it, so an event loop blocked for up to about three quarters
   * of it (7.5 s at the default 10 s) does not lose the job.
   */
  lockMs: number;
  /** Leave after this long without a job (0: never). */
  idleExitMs: number;
  /** This process's LoRA files, shared by its workers (one download per file). */
  loras: LoraFiles;
  onIdleExit?: () => void;
}

export class FleetWorker {
  private readonly lifecycle: Lifecycle;
  private readonly member: FleetMember;
  private worker: Worker<JobData> | null = null;
  /** For reading a job's state (see onStalled); made in start(). */
  private queue: Queue<JobData> | null = null;
  private readonly running = new Map<string, JobControl>();
  private draining = false;
  private jobsDone = 0;
  private lastActive = Date.now();
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly startedAt = new Date().toISOString();

  constructor(private readonly options: FleetWorkerOptions) {
    this.lifecycle = new Lifecycle({ ...options, notifier: new RedisNotifier(options.redis, options.keys, options.logger) });
    this.member = new FleetMember(options.redis, options.keys, () => this.info(), { intervalMs: 2000, ttlMs: 10_000 });
  }

  get id(): string {
    return this.options.id;
  }

  get state(): WorkerState {
    if (this.draining) return 'DRAINING';
    const s = this.options.engine.state;
    if (s === 'STOPPED') return 'STARTING';
    if (s === 'READY' && this.running.size > 0) return 'BUSY';
    return s;
  }

  /** Why it is UNHEALTHY (its engine's last error); null in every other state. */
  get reason(): string | null {
    return this.state === 'UNHEALTHY' ? (this.options.engine.lastError ?? null) : null;
  }

  private info() {
    return {
      id: this.options.id,
      host: hostname(),
      pid: process.pid,
      gpu: this.options.gpu,
      model: this.options.model,
      state: this.state,
      reason: this.reason,
      job: [...this.running.keys()][0] ?? null,
      jobs_done: this.jobsDone,
      started_at: this.startedAt,
      ...(this.options.engine.facts ? { loras: this.options.engine.facts.capabilities.loras ?? null } : {}),
    };
  }

  /**
   * Starts the engine and the heartbeat. Jobs are taken through a BullMQ Worker that exists
   * only while the engine is READY: it is closed when the engine dies or restarts (after
   * its job has ended) and made anew once the engine is back, so a broken engine never
   * holds a job that a healthy worker could run.
   */
  start(): void {
    countEngineRestarts(this.options.engine, this.options.metrics);
    this.options.engine.onStateChange((s) => {
      void this.member.beat();
      if (this.draining) return;
      // Idle time counts only while the engine can work, from the moment it can: a slow
      // start is not idleness.
      this.lastActive = Date.now();
      if (s === 'READY' && !this.worker) this.worker = this.newWorker();
      else if ((s === 'UNHEALTHY' || s === 'STARTING' || s === 'STOPPED') && this.worker) {
        const w = this.worker;
        this.worker = null;
        void w.close().catch((err: unknown) => this.options.logger.warn({ err }, 'closing the queue worker failed'));
      }
    });
    this.queue = new Queue<JobData>(queueName(this.options.model), { connection: this.options.bullConnection, prefix: this.options.keys.bull });
    this.queue.on('error', (err) => this.options.logger.warn({ err: err.message }, 'queue connection error'));
    this.member.start();
    this.options.engine.start();
    if (this.options.idleExitMs > 0) {
      this.idleTimer = setInterval(() => {
        const ready = this.options.engine.state === 'READY';
        if (!ready) this.lastActive = Date.now();
        if (!this.draining && ready && this.running.size === 0 && Date.now() - this.lastActive >= this.options.idleExitMs) {
          this.options.logger.info({ idle_s: Math.round((Date.now() - this.lastActive) / 1000) }, 'idle: leaving the fleet');
          this.options.onIdleExit?.();
        }
      }, Math.min(1000, this.options.idleExitMs));
      this.idleTimer.unref();
    }
  }

  private newWorker(): Worker<JobData> {
    const w = new Worker<JobData>(queueName(this.options.model), (job, token) => this.process(job, token), {
      connection: this.options.bullConnection,
      prefix: this.options.keys.bull,
      concurrency: 1,
      lockDuration: this.options.lockMs,
      // BullMQ's default renews at half the lock, so a blocked event loop could lose the
      // job after half of it; a quarter leaves three quarters (renewal is one Redis call).
      lockRenewTime: Math.round(this.options.lockMs / 4),
      stalledInterval: STALL_CHECK_MS,
      maxStalledCount: this.options.maxAttempts,
      drainDelay: 1,
    });
    w.on('error', (err) => this.options.logger.warn({ err: err.message }, 'queue connection error'));
    w.on('stalled', (id) => void this.onStalled(id));
    return w;
  }

  /**
   * This worker's stall check took job `id` back from a worker presumed dead (its lock
   * expired). The row still says PROCESSING by that worker; it goes back to QUEUED, guarded
   * by that claim, so it counts as waiting (klein_jobs_waiting) until a worker claims it.
   * A failure here is repaired by the gateways' reconciler.
   */
  private async onStalled(id: string): Promise<void> {
    if (!this.queue) return;
    try {
      const back = await returnTakenBack(this.options.db, this.queue, id);
      this.options.logger.warn({ request_id: id, row_requeued: back }, 'took back the job of a worker presumed dead');
    } catch (err) {
      this.options.logger.warn({ err, request_id: id }, 'could not put back the row of a job taken back from a worker presumed dead; the reconciler will');
    }
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
    await this.queue?.close().catch(() => undefined);
    await this.member.stop();
    await this.options.engine.stop();
  }

  private async process(job: Job<JobData>, _token?: string): Promise<void> {
    const { id } = job.data;
    // Registered before the claim, so a cancel that arrives meanwhile is not lost.
    const control = new JobControl();
    this.running.set(id, control);
    this.lastActive = Date.now();
    void this.member.beat();
    const jobs: JobToRun[] = [];
    try {
      const claim = await claimById(this.options.db, id, this.options.id, { leaseMs: this.options.lockMs, maxAttempts: this.options.maxAttempts });
      if (!claim.claimed) {
        if (claim.reason === 'exhausted') {
          const n = claim.row.attempts;
          await this.lifecycle.failed(id, new ApiError('engine_failed', `the request failed after ${n} attempts (its worker or engine kept dying)`), ['QUEUED', 'PROCESSING']);
        }
        return;
      }
      const inputs = await loadJobInputs(claim.row, this.options.storage);
      if (!inputs) {
        await this.lifecycle.failed(id, lostInputs(), ['PROCESSING'], this.options.id);
        return;
      }
      jobs.push({ row: claim.row, job: inputs, control }, ...(await this.mates(claim.row, inputs)));
      const ctx = {
        lifecycle: this.lifecycle,
        engine: this.options.engine,
        storage: this.options.storage,
        metrics: this.options.metrics,
        logger: this.options.logger,
        imageMetadata: this.options.imageMetadata,
        maxAttempts: this.options.maxAttempts,
        loras: this.options.loras,
      };
      const ends = await runBatch(ctx, jobs, this.options.id);
      this.jobsDone += ends.filter((e) => e === 'done').length;
      // A mate requeued after an engine crash has no BullMQ job: it gets one again (if Redis
      // is away, the reconciler adds it later: its row is QUEUED without a job).
      for (const [i, mate] of jobs.entries()) {
        if (i === 0 || ends[i] !== 'retry') continue;
        await this.queue?.add(queueName(this.options.model), { id: mate.row.id, route: mate.row.route, model: this.options.model }, jobOptions(mate.row.id, this.options.maxAttempts)).catch((err: unknown) =>
          this.options.logger.warn({ err, request_id: mate.row.id }, 'could not queue a requeued batch mate again; the reconciler will'),
        );
      }
      if (ends[0] === 'retry') throw new Error('the engine died while running this request; it is retried');
    } finally {
      this.running.delete(id);
      for (const mate of jobs.slice(1)) this.running.delete(mate.row.id);
      this.lastActive = Date.now();
      void this.member.beat();
    }
  }

  /**
   * Claims the queued requests that may run in one batch with `head` (see the header), each
   * registered for cancels at once. None when the engine runs one job at a time.
   */
  private async mates(head: RequestRow, headInputs: JobInputs): Promise<JobToRun[]> {
    const maxBatch = this.options.engine.maxBatch;
    if (maxBatch <= 1 || !this.queue) return [];
    const { db, storage } = this.options;
    const rows = await oldestQueued(db, pickWindow(maxBatch), this.options.model);
    const picked = (await pickBatch({ row: head, inputs: headInputs }, rows, maxBatch, (r) => loadJobInputs(r, storage))).slice(1);
    if (picked.length === 0) return [];
    // Registered before the claim, as the head's control is, so no cancel is lost.
    const controls = new Map(picked.map((c) => [c.row.id, new JobControl()]));
    for (const [mateId, control] of controls) this.running.set(mateId, control);
    const inputs = new Map(picked.map((c) => [c.row.id, c.inputs]));
    const taken = await claimBatch(db, [...controls.keys()], this.options.id, this.options.lockMs).catch((err: unknown) => {
      for (const mateId of controls.keys()) this.running.delete(mateId);
      throw err;
    });
    const mates: JobToRun[] = [];
    try {
      for (const row of taken) {
        // 1: removed (or it had none); 0: another worker holds it and will claim the row.
        if ((await this.queue.remove(row.id).catch(() => 0)) === 1) {
          mates.push({ row, job: inputs.get(row.id)!, control: controls.get(row.id)! });
          controls.delete(row.id);
        } else {
          await unclaim(db, row.id, { workerId: this.options.id, attempts: row.attempts });
        }
      }
    } catch (err) {
      // The database failed: give back every claim that has not run (best effort; a mate
      // left QUEUED without its job is queued again by the reconciler).
      for (const row of taken) await unclaim(db, row.id, { workerId: this.options.id, attempts: row.attempts }).catch(() => false);
      for (const row of taken) this.running.delete(row.id);
      throw err;
    } finally {
      for (const mateId of controls.keys()) this.running.delete(mateId);
    }
    if (mates.length > 0) this.options.logger.info({ request_id: head.id, mates: mates.map((m) => m.row.id) }, 'running queued requests as one batch');
    return mates;
  }
}
