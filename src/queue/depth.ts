/** Each served model's queue depth and oldest queued request's age, from the rows (any queue, any dialect). */
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import type { QueueDepth } from '../metrics/metrics.js';

/**
 * One grouped read: every model of `models` is in the answer, an idle one with zeros
 * (a gauge that vanishes when its queue empties would read as "no data" to an autoscaler).
 */
export async function queueDepths(db: Kysely<Database>, models: readonly string[], now = Date.now()): Promise<Map<string, QueueDepth>> {
  const rows = await db
    .selectFrom('requests')
    .select(['model', 'status', (eb) => eb.fn.countAll().as('n'), (eb) => eb.fn.min('created_at').as('oldest')])
    .where('status', 'in', ['QUEUED', 'PROCESSING'])
    .groupBy(['model', 'status'])
    .execute();
  const out = new Map<string, QueueDepth>(models.map((m) => [m, { waiting: 0, running: 0, oldestAgeS: 0 }]));
  for (const r of rows) {
    const d = out.get(r.model);
    if (!d) continue; // a model no longer served: its rows are failed at start-up
    if (r.status === 'PROCESSING') d.running = Number(r.n);
    else {
      d.waiting = Number(r.n);
      d.oldestAgeS = r.oldest === null ? 0 : Math.max(0, (now - Number(r.oldest)) / 1000);
    }
  }
  return out;
}
