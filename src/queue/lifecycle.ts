/**
 * The end of a request, in one place for every queue and worker: each terminal state is
 *
 *   conditional transition of the row (…WHERE status IN from [AND worker_id = owner])
 *     → ledger: settle (COMPLETED) or release (FAILED, CANCELLED), keyed by request id
 *     → tell the waiters (the in-process bus, or Redis for other gateways)
 *     → drop stored reference pixels, record the webhook, give the concurrency slot back
 *
 * Only the caller whose transition moved the row does the rest, so two parties racing
 * to end one request (a cancel and a finishing worker, a dead worker's job retried
 * elsewhere) never both act; and because the ledger steps are keyed by request id, a crash
 * between steps is repaired by repeating them, never by charging twice.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { balance, release, settle } from '../accounts/ledger.js';
import type { ResolvedParams } from '../contract/types.js';
import { ApiError } from '../gateway/errors.js';
import type { Limiter } from '../gateway/limits.js';
import type { Metrics } from '../gateway/metrics.js';
import type { RequestStatus } from '../store/request-states.js';
import { getRequest, transition, type RequestRow, type TransitionFields } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import { recordWebhook } from '../webhooks/record.js';
import type { CancelReason, EncodedOutput, JobOutcome, ProgressEvent } from './events.js';
import { inputKey } from './storage-keys.js';

/** Where progress and outcomes go: the in-process bus, or Redis for a fleet. */
export interface Notifier {
  progress(id: string, ev: ProgressEvent): void;
  finish(id: string, outcome: JobOutcome): void;
}

export interface LifecycleOptions {
  db: Kysely<Database>;
  storage: OutputStorage;
  metrics: Metrics;
  logger: Logger;
  limiter: Limiter;
  notifier: Notifier;
  /** Called after a webhook delivery row was recorded (wakes a dispatcher in this process). */
  onWebhook?: () => void;
}

/** The concurrency slot of a request is held under its key's name (see limits.ts). */
export const slotKey = (keyId: string): string => `key:${keyId}`;

export class Lifecycle {
  constructor(private readonly o: LifecycleOptions) {}

  /**
   * PROCESSING → COMPLETED (only by its owner, when given), then settle. Returns the
   * outcome, or null when the row was no longer this caller's (cancelled, or taken over).
   */
  async completed(
    id: string,
    o: { owner?: string; priceMicro: number; output: EncodedOutput; outputKey: string; generationTimeS: number; timings: Record<string, number> },
  ): Promise<JobOutcome | null> {
    const moved = await this.move(id, ['PROCESSING'], 'COMPLETED', o.owner, {
      cost_micro: o.priceMicro,
      timings: JSON.stringify({ ...o.timings, generation_s: o.generationTimeS }),
      output_format: o.output.format,
      output_key: o.outputKey,
    });
    if (!moved) return null;
    await settle(this.o.db, id);
    const row = await getRequest(this.o.db, id);
    const outcome: JobOutcome = {
      status: 'COMPLETED',
      output: o.output,
      costMicro: o.priceMicro,
      balanceMicro: row ? await balance(this.o.db, row.account_id) : 0,
      generationTimeS: o.generationTimeS,
      timings: o.timings,
    };
    await this.finish(id, outcome, row);
    return outcome;
  }

  /** A step of a running request, for whoever listens (the waiting call, SSE streams). */
  progress(id: string, ev: ProgressEvent): void {
    this.o.notifier.progress(id, ev);
  }

  /**
   * PROCESSING → QUEUED (only by its owner): the request runs again, with its reservation
   * kept. False when the row was no longer this owner's.
   */
  async requeue(id: string, owner: string): Promise<boolean> {
    return this.move(id, ['PROCESSING'], 'QUEUED', owner, {});
  }

  /** → FAILED from one of `from`, then release. False when the row was elsewhere. */
  async failed(id: string, error: ApiError, from: readonly RequestStatus[] = ['QUEUED', 'PROCESSING'], owner?: string): Promise<boolean> {
    if (!(await this.move(id, from, 'FAILED', owner, { error_code: error.code, error_message: error.message }))) return false;
    await this.afterFailure(id, error);
    return true;
  }

  /** → CANCELLED from one of `from`, then release. False when the row was elsewhere. */
  async cancelled(id: string, reason: CancelReason, from: readonly RequestStatus[], owner?: string): Promise<boolean> {
    if (!(await this.move(id, from, 'CANCELLED', owner, { error_code: 'cancelled', error_message: `cancelled (${reason})` }))) return false;
    await release(this.o.db, id);
    await this.finish(id, { status: 'CANCELLED', reason });
    return true;
  }

  /**
   * The rest of a failure whose row is already FAILED (start-up recovery moves many rows
   * in one statement). Safe to repeat: release is keyed by request id.
   */
  async afterFailure(id: string, error: ApiError): Promise<void> {
    await release(this.o.db, id);
    await this.finish(id, { status: 'FAILED', error });
  }

  private async move(id: string, from: readonly RequestStatus[], to: RequestStatus, owner: string | undefined, fields: TransitionFields): Promise<boolean> {
    return transition(this.o.db, id, from, to, fields, Date.now(), owner);
  }

  /** `known`: the row as it is now, when the caller has just read it (saves a read). */
  private async finish(id: string, outcome: JobOutcome, known?: RequestRow | null): Promise<void> {
    this.o.metrics.jobsFinished.inc({ status: outcome.status });
    this.o.notifier.finish(id, outcome);
    const row = known === undefined ? await getRequest(this.o.db, id) : known;
    if (!row) return;
    const params = JSON.parse(row.params) as ResolvedParams;
    for (let i = 0; i < (params.image_urls ?? []).length; i++) await this.o.storage.delete(inputKey(id, i)).catch(() => undefined);
    await this.o.limiter.release(slotKey(row.key_id), id).catch((err: unknown) => this.o.logger.warn({ err, request_id: id }, 'could not release the concurrency slot'));
    if (row.webhook_url) {
      await recordWebhook(this.o.db, row);
      this.o.onWebhook?.();
    }
  }
}

/** The failure a job gets when it cannot start: its stored inputs are gone. */
export const lostInputs = (): ApiError => new ApiError('engine_failed', 'the request lost its inputs before it ran');
