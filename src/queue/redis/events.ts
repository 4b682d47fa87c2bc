/**
 * Progress, outcomes and cancels across the fleet, over Redis pub/sub:
 *
 *   worker ── PUBLISH <prefix>:events {t: progress | done, id, …} ──▶ every gateway's JobBus
 *   worker ── SET <prefix>:progress:<id> {step, total} (10 min) ──▶ status polls on any gateway
 *   worker ── RPUSH <prefix>:progress:<id>:log {a, step, total} (newest EVENT_LOG_MAX,
 *             EVENT_LOG_TTL_MS) ──▶ an event stream resumed on any gateway replays it
 *   gateway ── PUBLISH <prefix>:cancel {id, reason} ──▶ every worker (the one running it stops)
 *
 * Pub/sub is fire-and-forget: a message sent while a gateway is disconnected is lost. So
 * nothing depends on it alone — a `done` message only wakes a waiter early, and every
 * waiter also reads the request's row (the database is the record; see
 * DistributedQueue.waitFor). A gateway resolves outcomes only for requests someone in it
 * waits for, so the output bytes are read from storage once, by the gateway that answers.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RgbImage } from '../../contract/types.js';
import { EVENT_LOG_MAX, EVENT_LOG_TTL_MS, type CancelReason, type JobBus, type JobOutcome, type LoggedStep, type ProgressEvent } from '../events.js';
import type { Notifier } from '../lifecycle.js';
import type { RedisKeys } from '../../redis/connection.js';

const PROGRESS_TTL_MS = 10 * 60_000;

type EventMessage =
  | { t: 'progress'; id: string; step: number; total: number; a?: number; preview?: { w: number; h: number; rgb: string } }
  | { t: 'done'; id: string; status: JobOutcome['status'] };

interface CancelMessage {
  id: string;
  reason: CancelReason;
}

/** Publishes what a worker's jobs do. Errors are logged, never thrown into the job. */
export class RedisNotifier implements Notifier {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
  ) {}

  progress(id: string, ev: ProgressEvent): void {
    const msg: EventMessage = { t: 'progress', id, step: ev.step, total: ev.total, ...(ev.attempt !== undefined ? { a: ev.attempt } : {}) };
    if (ev.preview) msg.preview = { w: ev.preview.width, h: ev.preview.height, rgb: ev.preview.data.toString('base64') };
    const tx = this.redis.multi().set(this.keys.progress(id), JSON.stringify({ step: ev.step, total: ev.total }), 'PX', PROGRESS_TTL_MS);
    // The log is written in the same MULTI as the PUBLISH, before it: a stream that
    // subscribed and then reads the log finds every step in one or the other (or both;
    // it drops repeats by id).
    if (ev.attempt !== undefined) {
      const log = logKey(this.keys, id);
      tx.rpush(log, JSON.stringify({ a: ev.attempt, step: ev.step, total: ev.total }))
        .ltrim(log, -EVENT_LOG_MAX, -1)
        .pexpire(log, EVENT_LOG_TTL_MS);
    }
    tx.publish(this.keys.events, JSON.stringify(msg))
      .exec()
      .catch((err: unknown) => this.logger.warn({ err, request_id: id }, 'progress not published'));
  }

  finish(id: string, outcome: JobOutcome): void {
    const msg: EventMessage = { t: 'done', id, status: outcome.status };
    this.redis
      .multi()
      .del(this.keys.progress(id))
      .publish(this.keys.events, JSON.stringify(msg))
      .exec()
      .catch((err: unknown) => this.logger.warn({ err, request_id: id }, 'outcome not published (waiters read the database)'));
  }

  /** Asks the worker running `id` to stop it (between two steps). */
  async cancel(id: string, reason: CancelReason): Promise<void> {
    await this.redis.publish(this.keys.cancels, JSON.stringify({ id, reason } satisfies CancelMessage));
  }
}

/** The last progress of a running request, as the worker left it in Redis. */
export async function readProgress(redis: Redis, keys: RedisKeys, id: string): Promise<ProgressEvent | null> {
  const raw = await redis.get(keys.progress(id));
  if (!raw) return null;
  const p = JSON.parse(raw) as { step: number; total: number };
  return { step: p.step, total: p.total };
}

/** Where a request's steps are logged (next to its last progress). */
const logKey = (keys: RedisKeys, id: string): string => `${keys.progress(id)}:log`;

/** The steps the workers logged for a request, oldest first (see RedisNotifier.progress). */
export async function readProgressLog(redis: Redis, keys: RedisKeys, id: string): Promise<LoggedStep[]> {
  const raw = await redis.lrange(logKey(keys, id), 0, -1);
  const out: LoggedStep[] = [];
  for (const r of raw) {
    try {
      const e = JSON.parse(r) as { a: number; step: number; total: number };
      out.push({ attempt: e.a, step: e.step, total: e.total });
    } catch {
      /* not ours */
    }
  }
  return out;
}

/**
 * A gateway's subscription: feeds its JobBus with the fleet's events. `resolve` turns a
 * `done` wake-up into the outcome (from the row and storage).
 */
export async function subscribeEvents(
  sub: Redis,
  keys: RedisKeys,
  bus: JobBus,
  resolve: (id: string) => Promise<JobOutcome | null>,
  logger: Logger,
): Promise<void> {
  sub.on('message', (channel: string, raw: string) => {
    if (channel !== keys.events) return;
    let msg: EventMessage;
    try {
      msg = JSON.parse(raw) as EventMessage;
    } catch {
      return;
    }
    if (!bus.isWatched(msg.id)) return;
    if (msg.t === 'progress') {
      const preview: RgbImage | undefined = msg.preview ? { width: msg.preview.w, height: msg.preview.h, data: Buffer.from(msg.preview.rgb, 'base64') } : undefined;
      bus.progress(msg.id, { step: msg.step, total: msg.total, ...(msg.a !== undefined ? { attempt: msg.a } : {}), ...(preview ? { preview } : {}) });
      return;
    }
    void resolve(msg.id)
      .then((outcome) => outcome && bus.finish(msg.id, outcome))
      .catch((err: unknown) => logger.warn({ err, request_id: msg.id }, 'could not read a finished request'));
  });
  await subscribeWhenReady(sub, keys.events);
}

/** A worker's subscription to cancels: `onCancel` is called for every request asked to stop. */
export async function subscribeCancels(sub: Redis, keys: RedisKeys, onCancel: (id: string, reason: CancelReason) => void): Promise<void> {
  sub.on('message', (channel: string, raw: string) => {
    if (channel !== keys.cancels) return;
    try {
      const m = JSON.parse(raw) as CancelMessage;
      onCancel(m.id, m.reason);
    } catch {
      /* not ours */
    }
  });
  await subscribeWhenReady(sub, keys.cancels);
}

/**
 * SUBSCRIBE once the connection is ready, not while it connects: ioredis (5.11) then sends
 * its ready check (INFO) after the SUBSCRIBE, Redis refuses it on a subscribed connection,
 * and ioredis reconnects without the subscription — the gateway silently hears nothing
 * (seen as a fleet stream with no progress when the process started up slower). Waiting
 * changes nothing else: a SUBSCRIBE queued while Redis is away waited for it too.
 */
async function subscribeWhenReady(sub: Redis, channel: string): Promise<void> {
  // Not events.once: it rejects on 'error', which ioredis emits for every failed attempt
  // while it keeps trying to connect.
  if (sub.status !== 'ready') await new Promise<void>((resolve) => sub.once('ready', () => resolve()));
  await sub.subscribe(channel);
}
