/**
 * Turns a finished request row back into the outcome a waiting call would have seen, for
 * replays (Idempotency-Key) of requests that already ended.
 */
import type { ImageFormat, ResolvedParams } from '../contract/types.js';
import { balance } from '../accounts/ledger.js';
import type { JobOutcome } from '../queue/events.js';
import { CONTENT_TYPES } from '../queue/storage-keys.js';
import type { RequestRow } from '../store/requests.js';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import type { CancelReason } from '../queue/events.js';
import { ApiError, ERRORS, type ErrorCode } from './errors.js';

export function errorOf(row: RequestRow): ApiError {
  const code = (row.error_code && row.error_code in ERRORS ? row.error_code : 'engine_failed') as ErrorCode;
  return new ApiError(code, row.error_message ?? undefined);
}

const CANCEL_REASONS: readonly CancelReason[] = ['timeout', 'client_gone', 'user', 'shutdown'];

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
