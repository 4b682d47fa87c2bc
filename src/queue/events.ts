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
}

export class JobBus {
  private readonly emitter = new EventEmitter();
  private readonly finished = new Map<string, JobOutcome>();
  private readonly last = new Map<string, ProgressEvent>();

  constructor() {
    // Many concurrent waiters are normal for a busy server.
    this.emitter.setMaxListeners(0);
  }

  progress(id: string, ev: ProgressEvent): void {
    this.last.set(id, ev);
    this.emitter.emit(`progress:${id}`, ev);
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
