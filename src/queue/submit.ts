/**
 * Submission, the same for every queue:
 *
 *   store the reference pixels (when the job must survive this process)
 *   BEGIN  reserve the price (406 when short) → insert the QUEUED row  COMMIT
 *
 * The reservation and the row commit together, so a crash can leave neither a reservation
 * without its request nor a request without its reservation; pixels stored before a crash
 * or a refusal are removed (or are unreferenced files, never money). A taken
 * Idempotency-Key rolls the transaction back and answers the request that holds it.
 */
import type { Kysely } from 'kysely';
import { InsufficientBalance, reserveIn } from '../accounts/ledger.js';
import { fault } from '../faults.js';
import { IdempotencyKeyTaken, createRequest } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import { storeJobInputs } from './job-inputs.js';
import { inputKey } from './storage-keys.js';
import type { SubmitResult, SubmitSpec } from './types.js';

export async function submitRequest(
  options: { db: Kysely<Database>; storage: OutputStorage; retentionMs: number },
  spec: SubmitSpec,
  durable: boolean,
): Promise<SubmitResult> {
  const removeInputs = async () => {
    for (let i = 0; i < spec.images.length; i++) await options.storage.delete(inputKey(spec.id, i)).catch(() => undefined);
  };
  if (durable) await storeJobInputs(spec.id, spec.images, options.storage);
  fault('submit.after_inputs');
  try {
    const row = await options.db.transaction().execute(async (trx) => {
      await reserveIn(trx, { accountId: spec.accountId, requestId: spec.id, priceMicro: spec.priceMicro });
      fault('submit.after_reserve');
      return createRequest(trx, {
        id: spec.id,
        account_id: spec.accountId,
        key_id: spec.keyId,
        route: spec.route,
        model: spec.model,
        params: spec.storedParams,
        seed: spec.params.seed,
        width: spec.params.width,
        height: spec.params.height,
        price_micro: spec.priceMicro,
        webhook_url: spec.webhookUrl ?? null,
        idempotency_key: spec.idempotencyKey ?? null,
        idempotency_hash: spec.idempotencyHash ?? null,
        retention_ms: options.retentionMs,
        hold_until: spec.holdUntil ?? null,
      });
    });
    fault('submit.after_commit');
    return { ok: true, row };
  } catch (err) {
    if (durable) await removeInputs();
    if (err instanceof InsufficientBalance) return { ok: false, reason: 'insufficient_credits', balanceMicro: err.balanceMicro };
    if (err instanceof IdempotencyKeyTaken) return { ok: false, reason: 'duplicate', existing: err.existing };
    throw err;
  }
}
