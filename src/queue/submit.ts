/**
 * Submission, the same for every queue: reserve the price (406 when short) → write the
 * reference pixels to storage when the job must survive this process → insert the QUEUED
 * row. A failure after the reservation releases it and removes what was written; a taken
 * Idempotency-Key answers the request that holds it.
 */
import type { Kysely } from 'kysely';
import { release, reserve } from '../accounts/ledger.js';
import { IdempotencyKeyTaken, createRequest } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import { storeJobInputs } from '../worker/load-job.js';
import { inputKey } from './storage-keys.js';
import type { SubmitResult, SubmitSpec } from './types.js';

export async function submitRequest(
  o: { db: Kysely<Database>; storage: OutputStorage; retentionMs: number },
  spec: SubmitSpec,
  durable: boolean,
): Promise<SubmitResult> {
  const r = await reserve(o.db, { accountId: spec.accountId, requestId: spec.id, priceMicro: spec.priceMicro });
  if (!r.ok) return { ok: false, reason: 'insufficient_credits', balanceMicro: r.balanceMicro };
  try {
    if (durable) await storeJobInputs(spec.id, spec.images, o.storage);
    const row = await createRequest(o.db, {
      id: spec.id,
      account_id: spec.accountId,
      key_id: spec.keyId,
      route: spec.route,
      params: spec.storedParams,
      seed: spec.params.seed,
      width: spec.params.width,
      height: spec.params.height,
      price_micro: spec.priceMicro,
      webhook_url: spec.webhookUrl ?? null,
      idempotency_key: spec.idempotencyKey ?? null,
      idempotency_hash: spec.idempotencyHash ?? null,
      retention_ms: o.retentionMs,
    });
    return { ok: true, row };
  } catch (err) {
    await release(o.db, spec.id);
    for (let i = 0; i < spec.images.length; i++) await o.storage.delete(inputKey(spec.id, i)).catch(() => undefined);
    if (err instanceof IdempotencyKeyTaken) return { ok: false, reason: 'duplicate', existing: err.existing };
    throw err;
  }
}
