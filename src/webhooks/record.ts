/**
 * Records the terminal event of a request for webhook delivery: one row per request
 * (UNIQUE(request_id), so recording twice is harmless). Whoever ends a request records it,
 * in the transaction that ends it (an outbox: the end and its delivery commit together) —
 * a gateway or a worker on another machine; a dispatcher on a gateway sends it. The body
 * is written by the dispatcher at the first attempt (it knows the public URL its links
 * need) and then kept, so every retry carries, and signs, the same bytes.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { RequestRow } from '../store/requests.js';
import type { Database } from '../store/schema.js';

export const WEBHOOK_EVENTS = { COMPLETED: 'request.completed', FAILED: 'request.failed', CANCELLED: 'request.cancelled' } as const;

export async function recordWebhook(db: Kysely<Database> | Transaction<Database>, row: RequestRow, now = Date.now()): Promise<void> {
  if (!row.webhook_url || !(row.status in WEBHOOK_EVENTS)) return;
  await db
    .insertInto('webhook_deliveries')
    .values({
      id: `msg_${randomUUID()}`,
      request_id: row.id,
      account_id: row.account_id,
      url: row.webhook_url,
      event: WEBHOOK_EVENTS[row.status as keyof typeof WEBHOOK_EVENTS],
      body: '',
      status: 'pending',
      attempts: 0,
      next_attempt_at: now,
      last_error: null,
      created_at: now,
      delivered_at: null,
    })
    .onConflict((oc) => oc.column('request_id').doNothing())
    .execute();
}
