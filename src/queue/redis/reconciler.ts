/**
 * Keeps the queue (Redis) in step with the record (the database), for what BullMQ cannot
 * see: a Redis that restarted without its data, or a job added to a row whose add was
 * lost. Every gateway runs it; every step is idempotent (a job id is the request id, so
 * adding it twice is a no-op, and the row transitions are conditional).
 *
 * Every `intervalMs`, for the oldest unfinished rows older than `graceMs`:
 * - QUEUED with no job in BullMQ → the job is added again;
 * - PROCESSING with no job in BullMQ and no live worker owning it → back to QUEUED and
 *   added again while attempts remain, else FAILED and released;
 * - PROCESSING whose job waits again in BullMQ (taken back from a worker presumed dead)
 *   → back to QUEUED (`returnTakenBack`; the worker whose stall check took the job back
 *   does it at once, this pass repairs what that worker could not finish).
 * (A PROCESSING row whose job is active is BullMQ's business: its lock and stall check
 * hand the job to another worker when the owner dies.)
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ApiError } from '../../contract/errors.js';
import { requeueClaim, transition } from '../../store/requests.js';
import type { Database } from '../../store/schema.js';
import type { Lifecycle } from '../lifecycle.js';
import type { RedisKeys } from '../../redis/connection.js';
import { aliveWorkers } from './fleet.js';

export interface ReconcilerOptions {
  db: Kysely<Database>;
  redis: Redis;
  keys: RedisKeys;
  /** Each served model's queue; undefined for a model this gateway does not serve (its rows are left to gateways that do). */
  queueOf: (model: string) => Pick<Queue, 'getJobState'> | undefined;
  lifecycle: Lifecycle;
  enqueue: (id: string, route: string, model: string) => Promise<void>;
  logger: Logger;
  maxAttempts: number;
  intervalMs: number;
  graceMs: number;
}

/** Job states in which BullMQ holds a job for nobody: it waits to be taken. */
const NOT_HELD = new Set(['waiting', 'prioritized', 'delayed']);

/**
 * BullMQ took job `id` back from its holder (the lock expired: the holder is presumed dead)
 * and it waits again, but the row still says PROCESSING by that holder, so it would count
 * as running (klein_jobs_running) while nothing runs it, and as not waiting for the
 * autoscalers. This moves the row back to QUEUED, guarded by the claim that lost the job
 * (its worker and attempt number, `requeueClaim`), and only while no one holds the job.
 *
 * The order matters: the row is read first, the job's state second. A worker that takes
 * the job holds it (active) before it claims the row, so if the row still names the old
 * claim and the job is not held, that claim has lost the job; if another worker claimed
 * the row meanwhile, the guarded UPDATE finds a different claim and does nothing.
 * Returns whether the row moved.
 */
export async function returnTakenBack(db: Kysely<Database>, queue: Pick<Queue, 'getJobState'>, id: string): Promise<boolean> {
  const row = await db.selectFrom('requests').select(['status', 'worker_id', 'attempts']).where('id', '=', id).executeTakeFirst();
  if (row?.status !== 'PROCESSING' || row.worker_id === null) return false;
  if (!NOT_HELD.has(await queue.getJobState(id))) return false;
  return requeueClaim(db, id, { workerId: row.worker_id, attempts: row.attempts });
}

export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(private readonly options: ReconcilerOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.busy || this.options.redis.status !== 'ready') return;
    this.busy = true;
    try {
      await this.reconcile();
    } catch (err) {
      this.options.logger.warn({ err }, 'reconcile failed; will try again');
    } finally {
      this.busy = false;
    }
  }

  /** One pass; returns what it did (tests call it directly). */
  async reconcile(now = Date.now()): Promise<{ requeued: string[]; failed: string[]; returned: string[] }> {
    const rows = await this.options.db
      .selectFrom('requests')
      .select(['id', 'status', 'route', 'model', 'worker_id', 'attempts'])
      .where('status', 'in', ['QUEUED', 'PROCESSING'])
      .where('created_at', '<=', now - this.options.graceMs)
      .orderBy('created_at')
      .limit(500)
      .execute();
    const done = { requeued: [] as string[], failed: [] as string[], returned: [] as string[] };
    let alive: Set<string> | null = null;
    for (const r of rows) {
      const queue = this.options.queueOf(r.model);
      if (!queue) continue;
      // Read after the row, as returnTakenBack does (its comment says why).
      const state = await queue.getJobState(r.id);
      if (r.status === 'PROCESSING' && r.worker_id !== null && NOT_HELD.has(state)) {
        if (await requeueClaim(this.options.db, r.id, { workerId: r.worker_id, attempts: r.attempts })) done.returned.push(r.id);
        continue;
      }
      if (state !== 'unknown') continue;
      if (r.status === 'QUEUED') {
        await this.options.enqueue(r.id, r.route, r.model);
        done.requeued.push(r.id);
        continue;
      }
      alive ??= await aliveWorkers(this.options.redis, this.options.keys);
      if (r.worker_id && alive.has(r.worker_id)) continue;
      if (r.attempts < this.options.maxAttempts) {
        if (await transition(this.options.db, r.id, ['PROCESSING'], 'QUEUED', {}, now, r.worker_id ?? undefined)) {
          await this.options.enqueue(r.id, r.route, r.model);
          done.requeued.push(r.id);
        }
      } else {
        const e = new ApiError('engine_failed', `the request's worker was lost ${r.attempts} times`);
        if (await this.options.lifecycle.failed(r.id, e, ['PROCESSING'], r.worker_id ?? undefined)) done.failed.push(r.id);
      }
    }
    if (done.requeued.length + done.failed.length + done.returned.length > 0) {
      this.options.logger.warn(done, 'jobs missing from the queue were put back or failed; rows of jobs taken back from lost workers were put back');
    }
    return done;
  }
}
