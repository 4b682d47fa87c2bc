/**
 * The gateway's queue when scaled out (REDIS_URL): requests are rows in the shared
 * database, jobs are BullMQ jobs on Redis carrying only the request id, and workers
 * anywhere run them (worker/fleet-worker.ts). Any gateway replica can answer for any
 * request: status and position come from the database, progress from Redis.
 *
 *   submit: reserve → store reference pixels → row QUEUED → BullMQ add (jobId = request id)
 *             └ Redis away: the row fails and its credits are released → 503
 *   cancel: QUEUED → CANCELLED here (the job is removed, or skipped by the worker that
 *           finds the row ended); PROCESSING → a cancel message to the fleet
 *   wait:   the fleet's `done` message, or the row itself, whichever comes first
 *
 * The database is the record and Redis the transport: the reconciler (reconciler.ts)
 * puts back jobs that Redis lost.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ApiError } from '../../contract/errors.js';
import type { Limiter } from '../../limits/limits.js';
import type { Metrics } from '../../metrics/metrics.js';
import { outcomeOfRow } from '../outcomes.js';
import { TERMINAL } from '../../contract/request-states.js';
import { getRequest, queuePosition } from '../../store/requests.js';
import type { Database } from '../../store/schema.js';
import type { OutputStorage } from '../../storage/types.js';
import { queueDepths } from '../depth.js';
import type { CancelReason, JobBus, JobOutcome, LoggedStep, ProgressEvent } from '../events.js';
import { Lifecycle } from '../lifecycle.js';
import { submitRequest } from '../submit.js';
import type { QueueDepth } from '../../metrics/metrics.js';
import { loraSupportOf, type JobQueue, type LoraSupport, type Readiness, type SubmitResult, type SubmitSpec } from '../types.js';
import type { ConnOptions, RedisKeys } from '../../redis/connection.js';
import { queueName, type JobData } from './bull-job.js';
import { readProgress, readProgressLog, RedisNotifier, subscribeEvents } from './events.js';
import { readFleet, type FleetView } from './fleet.js';

export interface DistributedQueueOptions {
  db: Kysely<Database>;
  storage: OutputStorage;
  metrics: Metrics;
  logger: Logger;
  limiter: Limiter;
  bus: JobBus;
  /** Commands on the request path (fail-fast options). */
  redis: Redis;
  /** A connection in subscriber mode. */
  subscriber: Redis;
  /** Options for BullMQ's producer connection (fail-fast). */
  bullConnection: ConnOptions;
  keys: RedisKeys;
  /** The served models' slugs: one BullMQ queue each. */
  models: readonly string[];
  retentionMs: number;
  maxAttempts: number;
  /** How often the fleet view behind readiness is read (ms; default 1000). */
  fleetPollMs?: number;
  /** How long a synchronous call for a model with no live worker is told to wait (Retry-After, s). */
  noWorkerRetryAfterS?: number;
  /** How often a waiter reads the row while no `done` message came (ms). */
  pollMs?: number;
  onWebhook?: () => void;
}

/** The options every job is added with: BullMQ retries what the worker hands back ('retry'). */
export function jobOptions(id: string, maxAttempts: number) {
  return { jobId: id, attempts: maxAttempts, backoff: { type: 'fixed' as const, delay: 1000 }, removeOnComplete: true, removeOnFail: true };
}

export class DistributedQueue implements JobQueue {
  /** Each served model's BullMQ queue, by slug. */
  readonly queues: ReadonlyMap<string, Queue<JobData>>;
  private readonly lifecycle: Lifecycle;
  private readonly notifier: RedisNotifier;
  /** The fleet as last read (readiness is synchronous); null until the first read. */
  private fleet: FleetView | null = null;
  private fleetTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: DistributedQueueOptions) {
    this.queues = new Map(
      options.models.map((model) => {
        const q = new Queue<JobData>(queueName(model), { connection: options.bullConnection, prefix: options.keys.bull });
        q.on('error', (err) => options.logger.warn({ err, model }, 'queue connection error'));
        return [model, q] as const;
      }),
    );
    this.notifier = new RedisNotifier(options.redis, options.keys, options.logger);
    // Ends decided on a gateway (a queued request cancelled) reach waiters here at once and
    // other gateways through Redis.
    const notifier = this.notifier;
    this.lifecycle = new Lifecycle({
      ...options,
      notifier: {
        progress: (id, ev) => notifier.progress(id, ev),
        finish: (id, outcome) => {
          options.bus.finish(id, outcome);
          notifier.finish(id, outcome);
        },
      },
    });
  }

  async start(): Promise<void> {
    await subscribeEvents(this.options.subscriber, this.options.keys, this.options.bus, (id) => this.outcome(id), this.options.logger);
    await this.readFleet();
    this.fleetTimer = setInterval(() => void this.readFleet(), this.options.fleetPollMs ?? 1000);
    this.fleetTimer.unref();
  }

  async close(): Promise<void> {
    if (this.fleetTimer) clearInterval(this.fleetTimer);
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
  }

  private async readFleet(): Promise<void> {
    this.fleet = await readFleet(this.options.redis, this.options.keys).catch(() => this.fleet);
  }

  async submit(spec: SubmitSpec): Promise<SubmitResult> {
    const r = await submitRequest({ db: this.options.db, storage: this.options.storage, retentionMs: this.options.retentionMs }, spec, true);
    if (!r.ok) return r;
    try {
      await this.enqueue(spec.id, spec.route, spec.model);
    } catch (err) {
      const e = new ApiError('queue_unavailable', 'The job queue (Redis) is unreachable; the request was not queued and not charged', {
        headers: { 'retry-after': '5' },
        cause: err,
      });
      await this.lifecycle.failed(spec.id, e, ['QUEUED']);
      throw e;
    }
    return r;
  }

  /** Adds the job for request `id` to its model's queue (a no-op while a job with that id exists). */
  async enqueue(id: string, route: string, model: string): Promise<void> {
    const queue = this.queues.get(model);
    if (!queue) throw new Error(`the model ${model} is not served by this gateway`);
    await queue.add(queueName(model), { id, route, model }, jobOptions(id, this.options.maxAttempts));
  }

  async cancel(id: string, reason: CancelReason): Promise<boolean> {
    const row = await getRequest(this.options.db, id);
    if (await this.lifecycle.cancelled(id, reason, ['QUEUED'])) {
      if (row) await this.queues.get(row.model)?.remove(id).catch(() => undefined);
      return true;
    }
    const now = row?.status === 'PROCESSING' ? row : await getRequest(this.options.db, id);
    if (now?.status !== 'PROCESSING') return false;
    await this.notifier.cancel(id, reason).catch((err: unknown) => {
      throw new ApiError('queue_unavailable', 'The cancel could not reach the workers (Redis is unreachable); try again shortly', { cause: err });
    });
    return true;
  }

  async position(id: string): Promise<number> {
    return queuePosition(this.options.db, id);
  }

  async lastProgress(id: string): Promise<ProgressEvent | null> {
    return readProgress(this.options.redis, this.options.keys, id).catch(() => this.options.bus.lastProgress(id));
  }

  /**
   * The outcome, from the fleet's `done` message or from the row, whichever comes first:
   * the row is read at once and then every `pollMs`, so an outcome whose message was lost
   * (Redis away at that moment) is still found.
   */
  waitFor(id: string): Promise<JobOutcome> {
    const stop = new AbortController();
    const pollMs = this.options.pollMs ?? 1000;
    const fromRow = new Promise<JobOutcome>((resolve) => {
      const look = async () => {
        if (stop.signal.aborted) return;
        const options = await this.outcome(id).catch(() => null);
        if (options) resolve(options);
        else setTimeout(() => void look(), pollMs).unref();
      };
      void look();
    });
    return Promise.race([this.options.bus.waitFor(id, stop.signal), fromRow]).finally(() => stop.abort());
  }

  /** The workers' log in Redis; this gateway's own copy (what it relayed) when Redis is away. */
  async progressLog(id: string): Promise<LoggedStep[]> {
    return readProgressLog(this.options.redis, this.options.keys, id).catch(() => this.options.bus.history(id));
  }

  onProgress(id: string, fn: (ev: ProgressEvent) => void): () => void {
    return this.options.bus.onProgress(id, fn);
  }

  /** From the heartbeats of the model's workers (each carries its engine's LoRA capabilities once ready). */
  loraSupport(model: string): LoraSupport {
    const w = (this.fleet?.workers ?? []).find((x) => x.model === model && x.loras !== undefined);
    return w ? loraSupportOf(w.loras === null ? {} : { loras: w.loras }) : 'unknown';
  }

  async readinessNow(model: string): Promise<Readiness> {
    await this.readFleet();
    return this.readiness(model);
  }

  /**
   * Redis up, and a live worker for `model` (ready, busy or starting; one that is draining
   * or unhealthy takes no new work). With none, asynchronous work still queues (an
   * autoscaler sees its depth and starts a worker); a synchronous call gets 503.
   */
  readiness(model: string): Readiness {
    const s = this.options.redis.status;
    if (s !== 'ready') return { status: 'UNHEALTHY', reason: `the job queue's Redis is unreachable (${s})`, retryAfterS: 5 };
    if (!this.queues.has(model)) return { status: 'UNHEALTHY', reason: `the model ${model} is not served here` };
    const live = (this.fleet?.workers ?? []).filter((w) => w.model === model && (w.state === 'READY' || w.state === 'BUSY' || w.state === 'STARTING'));
    if (live.length === 0) return { status: 'READY', noWorkers: { retryAfterS: this.options.noWorkerRetryAfterS ?? 30 } };
    return { status: 'READY' };
  }

  async describe(): Promise<Record<string, unknown>> {
    const fleet = await readFleet(this.options.redis, this.options.keys).catch(() => null);
    return {
      role: 'api',
      redis: this.options.redis.status,
      workers: fleet
        ? {
            ready: fleet.ready,
            busy: fleet.busy,
            starting: fleet.starting,
            unhealthy: fleet.unhealthy,
            draining: fleet.draining,
            lost: fleet.lost,
            list: fleet.workers.map((w) => ({ id: w.id, model: w.model, gpu: w.gpu, state: w.state, reason: w.reason, job: w.job, jobs_done: w.jobs_done, seen_at: w.seen_at })),
            lost_ids: fleet.lost_ids,
          }
        : null,
    };
  }

  async depth(): Promise<ReadonlyMap<string, QueueDepth>> {
    return queueDepths(this.options.db, this.options.models);
  }

  /** The lifecycle, for the reconciler (it ends requests whose jobs are lost for good). */
  get ends(): Lifecycle {
    return this.lifecycle;
  }

  private async outcome(id: string): Promise<JobOutcome | null> {
    const row = await getRequest(this.options.db, id);
    if (!row) return { status: 'FAILED', error: new ApiError('not_found', `No request ${id}`) };
    if (!TERMINAL.has(row.status)) return null;
    return outcomeOfRow(this.options, row);
  }
}
