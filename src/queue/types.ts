/**
 * What the gateway needs from a queue, whichever runs behind it: the embedded default
 * (`LocalQueue`: rows in SQLite, one engine in this process) or the scale-out queue
 * (`DistributedQueue`: BullMQ on Redis, workers anywhere, PostgreSQL). Routes see only
 * this interface; they never touch an engine, Redis or BullMQ directly.
 */
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import type { HealthStatus } from '../contract/health-schema.js';
import type { QueueDepth } from '../metrics/metrics.js';
import type { RequestRow } from '../store/requests.js';
import type { CancelReason, JobOutcome, LoggedStep, ProgressEvent } from './events.js';
import type { LinearDims } from '../loras/check.js';

export interface SubmitSpec {
  id: string;
  accountId: string;
  keyId: string;
  /** 'v1' (synchronous) or 'v2' (asynchronous). */
  route: string;
  /** The served model's slug: its queue takes the job (contract §6). */
  model: string;
  params: ResolvedParams;
  /** `params` as stored: data: URIs replaced by a short digest (no image bytes in rows). */
  storedParams: Record<string, unknown>;
  images: RgbImage[];
  priceMicro: number;
  webhookUrl?: string | null;
  idempotencyKey?: string | null;
  idempotencyHash?: string | null;
  /**
   * Hold the charge until the answer is delivered, at most until this time (epoch ms): a
   * synchronous call without an Idempotency-Key (see queue/delivery.ts). Absent: settled
   * when it completes.
   */
  holdUntil?: number | null;
}

export type SubmitResult =
  | { ok: true; row: RequestRow }
  | { ok: false; reason: 'insufficient_credits'; balanceMicro: number }
  | { ok: false; reason: 'duplicate'; existing: RequestRow };

/** STARTING, READY, BUSY or UNHEALTHY (cog's states), plus DRAINING while shutting down. */

export interface Readiness {
  status: HealthStatus;
  reason?: string;
  /** Set when UNHEALTHY is a passing outage (the queue's Redis is away): 503 with Retry-After, not 502. */
  retryAfterS?: number;
  /**
   * A fleet with no live worker for the model (all gone, or scaled to zero): asynchronous
   * work waits in its queue (an autoscaler sees the depth and starts one); a synchronous
   * call is answered 503 with this Retry-After rather than left hanging.
   */
  noWorkers?: { retryAfterS: number };
}

export type LoraSupport = 'unknown' | 'none' | { dims: LinearDims | null };

/** A LoraSupport from an engine's `ready` capabilities (null facts: not ready yet). */
export function loraSupportOf(capabilities: { loras?: { dims?: LinearDims } | undefined } | null | undefined): LoraSupport {
  if (!capabilities) return 'unknown';
  if (!capabilities.loras) return 'none';
  return { dims: capabilities.loras.dims ?? null };
}

export interface JobQueue {
  /** Reserves the price and queues the job (406 when short; the existing row for a taken idempotency key). */
  submit(spec: SubmitSpec): Promise<SubmitResult>;
  /** Cancels a queued or running job (not charged). False when it had already ended. */
  cancel(id: string, reason: CancelReason): Promise<boolean>;
  /** 1-based place among queued requests; 0 when not queued. */
  position(id: string): Promise<number>;
  /** The last progress of a running job, or null. */
  lastProgress(id: string): Promise<ProgressEvent | null>;
  /** Resolves with the request's outcome once it ends (at once if it already has). */
  waitFor(id: string): Promise<JobOutcome>;
  /** The steps logged for the request, oldest first, for an event stream that resumes (events.ts). */
  progressLog(id: string): Promise<LoggedStep[]>;
  /** Calls `fn` for each step of the running job; returns the unsubscribe function. */
  onProgress(id: string, fn: (ev: ProgressEvent) => void): () => void;
  /** Can work for `model` be taken now? Synchronous: the gateway asks on every request. */
  readiness(model: string): Readiness;
  /**
   * The same, read afresh where `readiness` answers from a view kept up to date in the
   * background (the fleet's workers): asked before refusing a call for want of a worker, so a
   * worker that has just come up is not missed.
   */
  readinessNow(model: string): Promise<Readiness>;
  /**
   * Whether the engines of `model` take LoRA adapters, and the in/out features of its Linear
   * layers that a LoRA must fit (from an engine's `ready`): 'unknown' before any engine of it
   * has been ready (the engine checks the file itself then), 'none' when they take none.
   */
  loraSupport(model: string): LoraSupport;
  /** What /health shows besides the status: each model's engine, or the fleet of workers. */
  describe(): Promise<Record<string, unknown>>;
  /** Each served model's queue depth. */
  depth(): Promise<ReadonlyMap<string, QueueDepth>>;
}
