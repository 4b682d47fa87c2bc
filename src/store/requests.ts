/**
 * Request rows, which are also the embedded queue. Each function is one atomic statement
 * or one transaction; the header of each says what it guarantees.
 */
import type { Kysely, Selectable, Updateable } from 'kysely';
import type { Database, RequestsTable } from './schema.js';
import { canTransition, REQUEST_STATUSES, type RequestStatus } from './request-states.js';

export type RequestRow = Selectable<RequestsTable>;

export interface NewRequest {
  id: string;
  account_id: string;
  key_id: string;
  route: string;
  params: Record<string, unknown>;
  seed: number;
  width: number;
  height: number;
  price_micro: number;
  webhook_url?: string | null;
  idempotency_key?: string | null;
  idempotency_hash?: string | null;
  /** How long the record lives (ms); default 24 h. */
  retention_ms?: number;
}

const DAY_MS = 24 * 3600 * 1000;

/** Inserts a QUEUED row. Fails (unique id) rather than overwrite an existing request. */
export async function createRequest(db: Kysely<Database>, r: NewRequest, now = Date.now()): Promise<void> {
  await db
    .insertInto('requests')
    .values({
      id: r.id,
      account_id: r.account_id,
      key_id: r.key_id,
      route: r.route,
      status: 'QUEUED',
      params: JSON.stringify(r.params),
      seed: r.seed,
      width: r.width,
      height: r.height,
      price_micro: r.price_micro,
      webhook_url: r.webhook_url ?? null,
      idempotency_key: r.idempotency_key ?? null,
      idempotency_hash: r.idempotency_hash ?? null,
      attempts: 0,
      created_at: now,
      expires_at: now + (r.retention_ms ?? DAY_MS),
    })
    .execute();
}

export async function getRequest(db: Kysely<Database>, id: string): Promise<RequestRow | undefined> {
  return db.selectFrom('requests').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The row only if it belongs to `accountId` (another account's id reads as missing). */
export async function getRequestForAccount(db: Kysely<Database>, id: string, accountId: string): Promise<RequestRow | undefined> {
  return db.selectFrom('requests').selectAll().where('id', '=', id).where('account_id', '=', accountId).executeTakeFirst();
}

/**
 * Takes the oldest QUEUED row and makes it PROCESSING for `workerId`, in one transaction:
 * the conditional UPDATE (`… AND status = 'QUEUED'`) means two claimers can never both
 * get the same row; the loser moves on to the next candidate.
 */
export async function claimNext(db: Kysely<Database>, workerId: string, leaseMs: number, now = Date.now()): Promise<RequestRow | undefined> {
  for (let tries = 0; tries < 5; tries++) {
    const next = await db
      .selectFrom('requests')
      .select('id')
      .where('status', '=', 'QUEUED')
      .orderBy('created_at')
      .orderBy('id')
      .limit(1)
      .executeTakeFirst();
    if (!next) return undefined;
    const res = await db
      .updateTable('requests')
      .set((eb) => ({
        status: 'PROCESSING',
        worker_id: workerId,
        lease_until: now + leaseMs,
        started_at: now,
        attempts: eb('attempts', '+', 1),
      }))
      .where('id', '=', next.id)
      .where('status', '=', 'QUEUED')
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 1) return getRequest(db, next.id);
  }
  return undefined;
}

/**
 * Moves `id` from one of `from` to `to` with `fields`, as one conditional UPDATE. Returns
 * whether it happened (false: the row was already elsewhere, e.g. cancelled meanwhile).
 * Terminal states also stamp completed_at.
 */
export async function transition(
  db: Kysely<Database>,
  id: string,
  from: RequestStatus[],
  to: RequestStatus,
  fields: Updateable<RequestsTable> = {},
  now = Date.now(),
): Promise<boolean> {
  const legal = from.filter((f) => canTransition(f, to));
  if (legal.length === 0) throw new Error(`illegal transition ${from.join('|')} → ${to}`);
  const set: Updateable<RequestsTable> = { ...fields, status: to };
  if (to === 'COMPLETED' || to === 'FAILED' || to === 'CANCELLED') set.completed_at = now;
  if (to === 'QUEUED') {
    set.worker_id = null;
    set.lease_until = null;
  }
  const res = await db.updateTable('requests').set(set).where('id', '=', id).where('status', 'in', legal).executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/** 1-based position among QUEUED rows (oldest first); 0 when the row is not queued. */
export async function queuePosition(db: Kysely<Database>, id: string): Promise<number> {
  const row = await db.selectFrom('requests').select(['status', 'created_at']).where('id', '=', id).executeTakeFirst();
  if (!row || row.status !== 'QUEUED') return 0;
  const ahead = await db
    .selectFrom('requests')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'QUEUED')
    .where((eb) => eb.or([eb('created_at', '<', row.created_at), eb.and([eb('created_at', '=', row.created_at), eb('id', '<', id)])]))
    .executeTakeFirstOrThrow();
  return Number(ahead.n) + 1;
}

export async function countByStatus(db: Kysely<Database>): Promise<Partial<Record<RequestStatus, number>>> {
  const rows = await db
    .selectFrom('requests')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .where('status', 'in', ['QUEUED', 'PROCESSING'])
    .groupBy('status')
    .execute();
  const out: Partial<Record<RequestStatus, number>> = {};
  for (const s of REQUEST_STATUSES) out[s] = 0;
  for (const r of rows) out[r.status] = Number(r.n);
  return out;
}

/**
 * After a restart: rows left PROCESSING by a previous run are requeued while they have
 * attempts left, else FAILED. Returns the ids of each; the caller releases the failed ones.
 */
export async function recoverOnStartup(
  db: Kysely<Database>,
  opts: { maxAttempts: number },
): Promise<{ requeued: string[]; failed: string[] }> {
  const stuck = await db.selectFrom('requests').select(['id', 'attempts']).where('status', '=', 'PROCESSING').execute();
  const requeued: string[] = [];
  const failed: string[] = [];
  for (const r of stuck) {
    if (r.attempts < opts.maxAttempts) {
      if (await transition(db, r.id, ['PROCESSING'], 'QUEUED')) requeued.push(r.id);
    } else if (
      await transition(db, r.id, ['PROCESSING'], 'FAILED', {
        error_code: 'engine_failed',
        error_message: 'the server stopped while this request was running',
      })
    ) {
      failed.push(r.id);
    }
  }
  return { requeued, failed };
}

/** Deletes terminal rows past their expiry; returns their output keys for storage cleanup. */
export async function expireOlderThan(db: Kysely<Database>, now = Date.now()): Promise<string[]> {
  const rows = await db
    .selectFrom('requests')
    .select(['id', 'output_key'])
    .where('expires_at', '<=', now)
    .where('status', 'in', ['COMPLETED', 'FAILED', 'CANCELLED'])
    .execute();
  if (rows.length === 0) return [];
  await db.deleteFrom('requests').where('id', 'in', rows.map((r) => r.id)).execute();
  return rows.map((r) => r.output_key).filter((k): k is string => k !== null);
}

export async function findByIdempotencyKey(db: Kysely<Database>, accountId: string, key: string): Promise<RequestRow | undefined> {
  return db.selectFrom('requests').selectAll().where('account_id', '=', accountId).where('idempotency_key', '=', key).executeTakeFirst();
}
