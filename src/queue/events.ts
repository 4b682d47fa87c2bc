/**
 * What a running request tells the parts of the gateway that wait on it (the sync route,
 * the status and events routes). One `JobBus` per process: the embedded queue publishes
 * into it directly; in a fleet, the Redis subscriber (redis/events.ts) feeds it with what
 * the workers publish. Waiters subscribe by request id.
 */
import { EventEmitter } from 'node:events';
import type { ApiError } from '../contract/errors.js';
import type { ImageFormat, RgbImage } from '../contract/types.js';

export interface EncodedOutput {
  bytes: Buffer;
  format: ImageFormat;
  contentType: string;
  width: number;
  height: number;
  seed: number;
}

export interface CompletedOutcome {
  status: 'COMPLETED';
  output: EncodedOutput;
  costMicro: number;
  balanceMicro: number;
  /** Seconds from the start of processing to the encoded image (x-generation-time). */
  generationTimeS: number;
  timings: Record<string, number>;
}

export interface FailedOutcome {
  status: 'FAILED';
  error: ApiError;
}

export interface CancelledOutcome {
  status: 'CANCELLED';
  reason: CancelReason;
}

/** Why a request was cancelled: its sync timeout, its client left, its owner asked, the server stopped, or another image of its call failed. */
export type CancelReason = 'timeout' | 'client_gone' | 'user' | 'shutdown' | 'call_failed';

export type JobOutcome = CompletedOutcome | FailedOutcome | CancelledOutcome;

export interface ProgressEvent {
  step: number;
  total: number;
  preview?: RgbImage;
  /**
   * The attempt this step belongs to (the row's `attempts` after its claim, 1 for the first
   * run); stamped by the job's step callback (worker/run-job.ts), it makes the event's id.
   */
  attempt?: number;
}

/**
 * The `id:` of each event of a request's stream (contract §4, §9) — a number every gateway
 * of a fleet computes alike from what it knows, with no shared counter, increasing through
 * the request's life, a requeue after a crash included:
 *
 *   run n (the row's attempts after its n-th claim) owns the ids [n·B, (n+1)·B), B = 1,000,000:
 *     queued, while waiting for run n, at position p   n·B + (900,000 − min(p, 899,999))
 *     progress, step s of run n                        n·B + 900,000 + s   (s ≤ 100, contract §2)
 *   the terminal event, the row ending with attempts a  (a + 2)·B
 *
 * So a queued event outranks the ones of a farther position (a snapshot's id grows as the
 * request moves up; the same position has the same id on every gateway); every step of a
 * run outranks its queue; a requeued request waits and runs under a higher n (its row's
 * attempts grew by its claim), so its new steps never reuse an id a client has seen; and
 * the terminal event outranks all of them (a request cancelled while queued for run a + 1
 * included). The numbers are sparse on purpose: they are an order, not a count.
 */
export const eventIds = {
  BLOCK: 1_000_000,
  QUEUE_SPAN: 900_000,
  queued(run: number, position: number): number {
    return run * eventIds.BLOCK + eventIds.QUEUE_SPAN - Math.min(Math.max(1, position), eventIds.QUEUE_SPAN - 1);
  },
  progress(run: number, step: number): number {
    return run * eventIds.BLOCK + eventIds.QUEUE_SPAN + step;
  },
  terminal(attempts: number): number {
    return (attempts + 2) * eventIds.BLOCK;
  },
  /** The run an id belongs to. */
  runOf(id: number): number {
    return Math.floor(id / eventIds.BLOCK);
  },
} as const;

/** A step as the request's event log keeps it: no preview (replays carry none; see JobBus). */
export interface LoggedStep {
  step: number;
  total: number;
  attempt: number;
}

/** How many steps a request's log keeps (the newest): 100 steps a run, several runs. */
export const EVENT_LOG_MAX = 500;
/** How long a request's log is kept after its last step (ms). */
export const EVENT_LOG_TTL_MS = 15 * 60_000;

export class JobBus {
  private readonly emitter = new EventEmitter();
  private readonly finished = new Map<string, JobOutcome>();
  private readonly last = new Map<string, ProgressEvent>();
  /** Each request's steps, for streams that resume (embedded; a fleet's log is in Redis). */
  private readonly logs = new Map<string, { steps: LoggedStep[]; timer: NodeJS.Timeout | null }>();

  constructor() {
    // Many concurrent waiters are normal for a busy server.
    this.emitter.setMaxListeners(0);
  }

  progress(id: string, ev: ProgressEvent): void {
    this.last.set(id, ev);
    // Logged before it is emitted, so a stream that subscribes and then reads the log
    // misses nothing between the two.
    if (ev.attempt !== undefined) this.log(id, { step: ev.step, total: ev.total, attempt: ev.attempt });
    this.emitter.emit(`progress:${id}`, ev);
  }

  /**
   * The steps logged for a request (oldest first, at most EVENT_LOG_MAX, without previews:
   * a preview is 64×64 RGB, and keeping one per step for every request would cost more than
   * a resumed stream's missed pictures are worth). Kept EVENT_LOG_TTL_MS after its last step.
   */
  history(id: string): LoggedStep[] {
    return [...(this.logs.get(id)?.steps ?? [])];
  }

  private log(id: string, step: LoggedStep): void {
    let entry = this.logs.get(id);
    if (!entry) this.logs.set(id, (entry = { steps: [], timer: null }));
    entry.steps.push(step);
    if (entry.steps.length > EVENT_LOG_MAX) entry.steps.splice(0, entry.steps.length - EVENT_LOG_MAX);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.logs.delete(id), EVENT_LOG_TTL_MS).unref();
  }

  /** The last progress of a request that has not finished, or null. */
  lastProgress(id: string): ProgressEvent | null {
    return this.last.get(id) ?? null;
  }

  finish(id: string, outcome: JobOutcome): void {
    this.last.delete(id);
    // Kept briefly so a waiter that subscribes just after the end still gets it.
    this.finished.set(id, outcome);
    setTimeout(() => this.finished.delete(id), 30_000).unref();
    this.emitter.emit(`done:${id}`, outcome);
  }

  onProgress(id: string, fn: (ev: ProgressEvent) => void): () => void {
    this.emitter.on(`progress:${id}`, fn);
    return () => this.emitter.off(`progress:${id}`, fn);
  }

  /**
   * Resolves with the request's outcome (at once if it already finished recently). An
   * aborted `signal` stops listening (the promise then never resolves).
   */
  waitFor(id: string, signal?: AbortSignal): Promise<JobOutcome> {
    const done = this.finished.get(id);
    if (done) return Promise.resolve(done);
    return new Promise((resolve) => {
      const fn = (outcome: JobOutcome) => resolve(outcome);
      this.emitter.once(`done:${id}`, fn);
      signal?.addEventListener('abort', () => this.emitter.off(`done:${id}`, fn), { once: true });
    });
  }

  /** Whether anyone in this process waits for, or streams, this request. */
  isWatched(id: string): boolean {
    return this.emitter.listenerCount(`done:${id}`) + this.emitter.listenerCount(`progress:${id}`) > 0;
  }
}
