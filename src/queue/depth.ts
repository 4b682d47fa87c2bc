/** How long the oldest queued request has waited, from the rows (any queue, any dialect). */
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';

export async function oldestQueuedAgeS(db: Kysely<Database>, now = Date.now()): Promise<number> {
  const row = await db
    .selectFrom('requests')
    .select((eb) => eb.fn.min('created_at').as('oldest'))
    .where('status', '=', 'QUEUED')
    .executeTakeFirst();
  const oldest = row?.oldest === null || row?.oldest === undefined ? null : Number(row.oldest);
  return oldest === null ? 0 : Math.max(0, (now - oldest) / 1000);
}
