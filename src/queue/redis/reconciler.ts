/**
 * Keeps the queue (Redis) in step with the record (the database), for what BullMQ cannot
 * see: a Redis that restarted without its data, or a job added to a row whose add was
 * lost. Every gateway runs it; every step is idempotent (a job id is the request id, so
 * adding it twice is a no-op, and the row transitions are conditional).
 *
 * Every `intervalMs`, for the oldest unfinished rows older than `graceMs`:
 * - QUEUED with no job in BullMQ → the job is added again;
 * - PROCESSING with no job in BullMQ and no live worker owning it → back to QUEUED and
 *   added again while attempts remain, else FAILED and released.
 * (A PROCESSING row whose job still exists is BullMQ's business: its lock and stall check
 * hand the job to another worker when the owner dies.)
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ApiError } from '../../gateway/errors.js';
import { transition } from '../../store/requests.js';
import type { Database } from '../../store/schema.js';
import type { Lifecycle } from '../lifecycle.js';
import type { RedisKeys } from './connection.js';
import { aliveWorkers } from './fleet.js';

export interface ReconcilerOptions {
  db: Kysely<Database>;
  redis: Redis;
  keys: RedisKeys;
  queue: Queue;
  lifecycle: Lifecycle;
  enqueue: (id: string, route: string) => Promise<void>;
  logger: Logger;
  maxAttempts: number;
  intervalMs: number;
  graceMs: number;
}

export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(private readonly o: ReconcilerOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.busy || this.o.redis.status !== 'ready') return;
    this.busy = true;
    try {
      await this.reconcile();
    } catch (err) {
      this.o.logger.warn({ err }, 'reconcile failed; will try again');
    } finally {
      this.busy = false;
    }
  }

  /** One pass; returns what it did (tests call it directly). */
  async reconcile(now = Date.now()): Promise<{ requeued: string[]; failed: string[] }> {
    const rows = await this.o.db
      .selectFrom('requests')
      .select(['id', 'status', 'route', 'worker_id', 'attempts'])
      .where('status', 'in', ['QUEUED', 'PROCESSING'])
      .where('created_at', '<=', now - this.o.graceMs)
      .orderBy('created_at')
      .limit(500)
      .execute();
    const done = { requeued: [] as string[], failed: [] as string[] };
    let alive: Set<string> | null = null;
    for (const r of rows) {
      const state = await this.o.queue.getJobState(r.id);
      if (state !== 'unknown') continue;
      if (r.status === 'QUEUED') {
        await this.o.enqueue(r.id, r.route);
        done.requeued.push(r.id);
        continue;
      }
      alive ??= await aliveWorkers(this.o.redis, this.o.keys);
      if (r.worker_id && alive.has(r.worker_id)) continue;
      if (r.attempts < this.o.maxAttempts) {
        if (await transition(this.o.db, r.id, ['PROCESSING'], 'QUEUED', {}, now, r.worker_id ?? undefined)) {
          await this.o.enqueue(r.id, r.route);
          done.requeued.push(r.id);
        }
      } else {
        const e = new ApiError('engine_failed', `the request's worker was lost ${r.attempts} times`);
        if (await this.o.lifecycle.failed(r.id, e, ['PROCESSING'], r.worker_id ?? undefined)) done.failed.push(r.id);
      }
    }
    if (done.requeued.length + done.failed.length > 0) this.o.logger.warn(done, 'jobs missing from the queue were put back or failed');
    return done;
  }
}
