/**
 * Outcomes of requests, for the routes that answer them: waiting for one (synchronous
 * calls), the error an outcome answers with (the same for the call and for any replay of
 * it), and a finished row turned back into the outcome a waiting call would have seen
 * (replays of an Idempotency-Key).
 */
import type { ImageFormat, ResolvedParams } from '../contract/types.js';
import { balance } from '../accounts/ledger.js';
import type { JobOutcome } from './events.js';
import { CONTENT_TYPES } from './storage-keys.js';
import type { RequestRow } from '../store/requests.js';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import type { CancelReason } from './events.js';
import { ApiError, clientClosed, ERRORS, type ErrorCode } from '../contract/errors.js';
import type { JobQueue } from './types.js';
import type { Config } from '../config.js';

/**
 * The error a request that did not complete answers with: its failure's own code, or, when
 * cancelled, the code of why (timeout 504, shutdown 503, its owner 409, its client gone
 * 499). A replay answers the same, never a 500.
 */
export function outcomeError(outcome: Exclude<JobOutcome, { status: 'COMPLETED' }>): ApiError {
  if (outcome.status === 'FAILED') return outcome.error;
  switch (outcome.reason) {
    case 'timeout':
      return new ApiError('timeout', 'The request did not finish within the sync timeout; it was cancelled and not charged');
    case 'shutdown':
      return new ApiError('draining', 'The server shut down before the request finished; it was cancelled and not charged', { headers: { 'retry-after': '30' } });
    case 'client_gone':
      return clientClosed();
    case 'call_failed':
      return new ApiError('request_cancelled', 'The request was cancelled because another image of its call failed; it was not charged');
    case 'user':
      return new ApiError('request_cancelled', 'The request was cancelled before it finished; it was not charged');
  }
}

/**
 * Waits for a synchronous request's outcome. It is cancelled (not charged) when the sync
 * timeout passes (then 504), or when `signal` aborts (its client has gone; already aborted
 * included: a disconnect during admission is seen here).
 */
export async function waitForOutcome(deps: { queue: JobQueue; config: Pick<Config, 'syncTimeoutS'> }, id: string, signal?: AbortSignal): Promise<JobOutcome> {
  const done = deps.queue.waitFor(id);
  let timer: NodeJS.Timeout | undefined;
  const onGone = () => void deps.queue.cancel(id, 'client_gone').catch(() => undefined);
  if (signal?.aborted) onGone();
  else signal?.addEventListener('abort', onGone, { once: true });
  try {
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), deps.config.syncTimeoutS * 1000);
    });
    const first = await Promise.race([done, timedOut]);
    if (first !== 'timeout') return first;
    await deps.queue.cancel(id, 'timeout');
    // The cancel ends the job; a job that finished in the same instant keeps its result.
    return await done;
  } finally {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener('abort', onGone);
  }
}

export function errorOf(row: RequestRow): ApiError {
  const code = (row.error_code && row.error_code in ERRORS ? row.error_code : 'engine_failed') as ErrorCode;
  return new ApiError(code, row.error_message ?? undefined);
}

const CANCEL_REASONS: readonly CancelReason[] = ['timeout', 'client_gone', 'user', 'shutdown', 'call_failed'];

/** The reason a cancelled row was cancelled for (its message is `cancelled (<reason>)`). */
export function cancelReasonOf(row: RequestRow): CancelReason {
  const m = /\((\w+)\)/.exec(row.error_message ?? '');
  return CANCEL_REASONS.find((r) => r === m?.[1]) ?? 'user';
}

/** The outcome of a terminal row; null while it is still queued or running. */
export async function outcomeOfRow(deps: { db: Kysely<Database>; storage: OutputStorage }, row: RequestRow): Promise<JobOutcome | null> {
  if (row.status === 'FAILED') return { status: 'FAILED', error: errorOf(row) };
  if (row.status === 'CANCELLED') return { status: 'CANCELLED', reason: cancelReasonOf(row) };
  if (row.status !== 'COMPLETED') return null;
  const bytes = row.output_key ? await deps.storage.get(row.output_key) : null;
  if (!bytes) return { status: 'FAILED', error: new ApiError('not_found', 'The output of this request has expired') };
  const params = JSON.parse(row.params) as ResolvedParams;
  const format = (row.output_format ?? params.image_format) as ImageFormat;
  const timings = row.timings ? (JSON.parse(row.timings) as Record<string, number>) : {};
  return {
    status: 'COMPLETED',
    output: { bytes, format, contentType: CONTENT_TYPES[format], width: row.width, height: row.height, seed: Number(row.seed) },
    costMicro: Number(row.cost_micro ?? 0),
    balanceMicro: await balance(deps.db, row.account_id),
    generationTimeS: timings.generation_s ?? 0,
    timings,
  };
}
