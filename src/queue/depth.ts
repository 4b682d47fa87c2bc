/** The queue's depth and the oldest queued request's age, from the rows (any queue, any dialect). */
import type { Kysely } from 'kysely';
import { countByStatus } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { QueueDepth } from '../metrics/metrics.js';

export async function queueDepth(db: Kysely<Database>, now = Date.now()): Promise<QueueDepth> {
  const counts = await countByStatus(db, ['QUEUED', 'PROCESSING']);
  const row = await db
    .selectFrom('requests')
    .select((eb) => eb.fn.min('created_at').as('oldest'))
    .where('status', '=', 'QUEUED')
    .executeTakeFirst();
  const oldest = row?.oldest === null || row?.oldest === undefined ? null : Number(row.oldest);
  return { waiting: counts.QUEUED ?? 0, running: counts.PROCESSING ?? 0, oldestAgeS: oldest === null ? 0 : Math.max(0, (now - oldest) / 1000) };
}
