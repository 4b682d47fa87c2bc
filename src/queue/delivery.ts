/**
 * Held charges (contract §1: only a 200 is charged; §8: an OpenAI call of n images is all or
 * nothing). A synchronous request sent without an Idempotency-Key is submitted with
 * `hold_until`: it completes with its reservation still open, and the gateway that holds its
 * answer decides:
 *
 *   settleDelivered(ids)     once the answer has gone out: every image of the call is
 *                            settled in ONE transaction, or none is (false: one of them was
 *                            released meanwhile);
 *   releaseUndelivered(ids)  the answer will never go out (the client left, the call failed
 *                            for another image): each is released, its output deleted, and
 *                            its record says why (COMPLETED, cost 0, no output).
 *
 * A gateway that dies holding answers decides nothing: the repair sweep (repair.ts) releases
 * held rows once their hold_until has passed (it lies beyond the sync timeout, when no call
 * can still be waiting): a failure costs the operator an image, never the client one. Settle
 * and release exclude each other in the ledger itself, so a late settle after the sweep's
 * release fails instead of charging.
 */
import type { Kysely } from 'kysely';
import { releaseIn, settleIn } from '../accounts/ledger.js';
import { getRequest, markUndelivered } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';

class NotDeliverable extends Error {}
class NotReleased extends Error {}

/** Settles every request of one answer together; false (nothing charged) when one cannot be. */
export async function settleDelivered(db: Kysely<Database>, ids: readonly string[]): Promise<boolean> {
  try {
    await db.transaction().execute(async (trx) => {
      for (const id of ids) {
        const r = await settleIn(trx, id);
        if (r !== 'settled' && r !== 'already_settled') throw new NotDeliverable(`${id}: ${r}`);
      }
    });
  } catch (err) {
    if (err instanceof NotDeliverable) return false;
    throw err;
  }
  return true;
}

/**
 * Releases the held, COMPLETED requests among `ids` whose answer will not be delivered
 * (each its own transaction: the record's note and the release commit together, the row
 * written first as every end does, so locks are always taken in the same order); other
 * requests, and charges already settled, are left alone. Returns the ids released.
 */
export async function releaseUndelivered(db: Kysely<Database>, storage: OutputStorage, ids: readonly string[], why: string): Promise<string[]> {
  const released: string[] = [];
  for (const id of ids) {
    const outputKey = await db
      .transaction()
      .execute(async (trx) => {
        const row = await getRequest(trx, id);
        if (!row || row.status !== 'COMPLETED' || row.hold_until === null) return undefined;
        await markUndelivered(trx, id, why);
        // Settled meanwhile (delivered after all), or released already: undo the note.
        if ((await releaseIn(trx, id)) !== 'released') throw new NotReleased(id);
        return row.output_key;
      })
      .catch((err: unknown) => {
        if (err instanceof NotReleased) return undefined;
        throw err;
      });
    if (outputKey === undefined) continue;
    released.push(id);
    if (outputKey) await storage.delete(outputKey).catch(() => undefined);
  }
  return released;
}
