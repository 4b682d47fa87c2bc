/**
 * The end of a request, in one place for every queue and worker. Each terminal state is ONE
 * database transaction (SQLite and PostgreSQL alike):
 *
 *   BEGIN
 *     conditional transition of the row (…WHERE status IN from [AND worker_id = owner])
 *     ledger: settle (COMPLETED) or release (FAILED, CANCELLED), keyed by request id
 *     outbox: the webhook delivery row, when the request asked for one
 *   COMMIT
 *   then, best effort and never money: tell the waiters (the in-process bus, or Redis for
 *   other gateways), drop stored reference pixels, give the concurrency slot back, wake the
 *   webhook dispatcher.
 *
 * So a crash leaves either the whole end or none of it: the row still QUEUED or PROCESSING
 * (start-up recovery or the fleet's reconciler runs or fails it again) or terminal with its
 * ledger entry and its delivery. The repair sweep (repair.ts) closes whatever an older
 * version or a held charge left open. Only the caller whose transition moved the row does
 * the rest, so two parties racing to end one request (a cancel and a finishing worker, a
 * dead worker's job retried elsewhere) never both act.
 *
 * One exception, on purpose: a synchronous request with `hold_until` (its charge waits for
 * its answer, contract §1) completes without its settle; the gateway that delivers the
 * answer settles it, or releases it when the client is gone (delivery.ts).
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { balance, releaseIn, settleIn } from '../accounts/ledger.js';
import type { ResolvedParams } from '../contract/types.js';
import { ApiError } from '../contract/errors.js';
import type { Limiter } from '../limits/limits.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RequestStatus } from '../contract/request-states.js';
import { fault } from '../faults.js';
import { getRequest, recoverOnStartup, transition, type RequestRow, type TransitionFields } from '../store/requests.js';
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

/** The concurrency slot of a request is held under its key's name (see limits/limits.ts). */
export const slotKey = (keyId: string): string => `key:${keyId}`;

export class Lifecycle {
  constructor(private readonly options: LifecycleOptions) {}

  /**
   * PROCESSING → COMPLETED (only by its owner, when given) with its settle, unless its
   * charge is held. Returns the outcome, or null when the row was no longer this caller's
   * (cancelled, or taken over).
   */
  async completed(
    id: string,
    options: { owner?: string; priceMicro: number; output: EncodedOutput; outputKey: string; generationTimeS: number; timings: Record<string, number> },
  ): Promise<JobOutcome | null> {
    const ended = await this.end(id, ['PROCESSING'], 'COMPLETED', options.owner, {
      cost_micro: options.priceMicro,
      timings: JSON.stringify({ ...options.timings, generation_s: options.generationTimeS }),
      output_format: options.output.format,
      output_key: options.outputKey,
    });
    if (!ended) return null;
    const outcome: JobOutcome = {
      status: 'COMPLETED',
      output: options.output,
      costMicro: options.priceMicro,
      balanceMicro: ended.balanceMicro,
      generationTimeS: options.generationTimeS,
      timings: options.timings,
    };
    await this.after(ended.row, outcome);
    return outcome;
  }

  /** A step of a running request, for whoever listens (the waiting call, SSE streams). */
  progress(id: string, ev: ProgressEvent): void {
    this.options.notifier.progress(id, ev);
  }

  /**
   * PROCESSING → QUEUED (only by its owner): the request runs again, with its reservation
   * kept. False when the row was no longer this owner's.
   */
  async requeue(id: string, owner: string): Promise<boolean> {
    return transition(this.options.db, id, ['PROCESSING'], 'QUEUED', {}, Date.now(), owner);
  }

  /** → FAILED from one of `from`, with its release. False when the row was elsewhere. */
  async failed(id: string, error: ApiError, from: readonly RequestStatus[] = ['QUEUED', 'PROCESSING'], owner?: string): Promise<boolean> {
    const ended = await this.end(id, from, 'FAILED', owner, { error_code: error.code, error_message: error.message });
    if (!ended) return false;
    await this.after(ended.row, { status: 'FAILED', error });
    return true;
  }

  /** → CANCELLED from one of `from`, with its release. False when the row was elsewhere. */
  async cancelled(id: string, reason: CancelReason, from: readonly RequestStatus[], owner?: string): Promise<boolean> {
    const ended = await this.end(id, from, 'CANCELLED', owner, { error_code: 'cancelled', error_message: `cancelled (${reason})` });
    if (!ended) return false;
    await this.after(ended.row, { status: 'CANCELLED', reason });
    return true;
  }

  /**
   * Start-up recovery of the embedded queue, in one transaction: rows a previous run left
   * PROCESSING go back to QUEUED while attempts remain, the others FAILED with their
   * releases and webhook deliveries. Returns the requeued ids.
   */
  async recover(maxAttempts: number): Promise<string[]> {
    const { requeued, failed } = await this.options.db.transaction().execute(async (trx) => {
      const r = await recoverOnStartup(trx, { maxAttempts });
      const rows: RequestRow[] = [];
      for (const id of r.failed) {
        await releaseIn(trx, id);
        const row = await getRequest(trx, id);
        if (row) {
          await recordWebhook(trx, row);
          rows.push(row);
        }
      }
      return { requeued: r.requeued, failed: rows };
    });
    for (const row of failed) await this.after(row, { status: 'FAILED', error: new ApiError('engine_failed', row.error_message ?? undefined) });
    return requeued;
  }

  /** The transaction of an end (see the header); null when the row was not in `from` (or not the owner's). */
  private async end(id: string, from: readonly RequestStatus[], to: RequestStatus, owner: string | undefined, fields: TransitionFields): Promise<{ row: RequestRow; balanceMicro: number } | null> {
    const ended = await this.options.db.transaction().execute(async (trx) => {
      if (!(await transition(trx, id, from, to, fields, Date.now(), owner))) return null;
      fault(`end.${to}.after_transition`);
      const row = await getRequest(trx, id);
      if (!row) throw new Error(`request ${id} vanished inside the transaction that ended it`);
      if (to !== 'COMPLETED') await releaseIn(trx, id);
      else if (row.hold_until === null) await settleIn(trx, id);
      fault(`end.${to}.after_ledger`);
      await recordWebhook(trx, row);
      return { row, balanceMicro: await balance(trx, row.account_id) };
    });
    if (ended) fault(`end.${to}.after_commit`);
    return ended;
  }

  /** What follows a committed end: nothing here moves money, and each step may fail alone. */
  private async after(row: RequestRow, outcome: JobOutcome): Promise<void> {
    const id = row.id;
    this.options.metrics.jobsFinished.inc({ status: outcome.status });
    this.options.notifier.finish(id, outcome);
    const params = JSON.parse(row.params) as ResolvedParams;
    for (let i = 0; i < (params.image_urls ?? []).length; i++) await this.options.storage.delete(inputKey(id, i)).catch(() => undefined);
    await this.options.limiter.release(slotKey(row.key_id), id).catch((err: unknown) => this.options.logger.warn({ err, request_id: id }, 'could not release the concurrency slot'));
    if (row.webhook_url) this.options.onWebhook?.();
  }
}

/** The failure a job gets when it cannot start: its stored inputs are gone. */
export const lostInputs = (): ApiError => new ApiError('engine_failed', 'the request lost its inputs before it ran');
