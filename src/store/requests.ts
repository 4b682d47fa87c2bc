/**
 * Request rows, which are also the embedded default's durable queue (a job is a row;
 * a restart finds the rows again). Each function is one atomic statement or one
 * transaction, and its header says what it guarantees. Status changes follow
 * `contract/request-states.ts`. Queue order is (created_at, id) everywhere.
 *
 * Portable SQL only (UPDATE … RETURNING, DELETE … RETURNING, scalar subqueries): SQLite
 * 3.35+ and PostgreSQL both run every statement here.
 */
import type { Kysely, Selectable, Transaction, Updateable } from 'kysely';
import type { Database, RequestsTable } from './schema.js';
import { canTransition, isTerminal, REQUEST_STATUSES, TERMINAL, type RequestStatus } from '../contract/request-states.js';
import { DEFAULT_MODEL_SLUG } from '../contract/models.js';

type Db = Kysely<Database> | Transaction<Database>;

export type RequestRow = Selectable<RequestsTable>;

export interface NewRequest {
  id: string;
  account_id: string;
  key_id: string;
  route: string;
  /** The served model's slug (contract §6); absent: the default model. */
  model?: string;
  /** ResolvedParams as stored: no image bytes (data: URIs replaced by a digest). */
  params: Record<string, unknown>;
  seed: number;
  width: number;
  height: number;
  price_micro: number;
  webhook_url?: string | null;
  idempotency_key?: string | null;
  idempotency_hash?: string | null;
  /** How long the record lives after creation (ms); default 24 h (contract §4). */
  retention_ms?: number;
  /** A synchronous request's charge is held until its answer is delivered, at most until then (see schema.ts). */
  hold_until?: number | null;
}

export const DEFAULT_RETENTION_MS = 24 * 3600 * 1000;

/** Another request of the same account already holds this Idempotency-Key. */
export class IdempotencyKeyTaken extends Error {
  constructor(readonly existing: RequestRow) {
    super(`idempotency key already used by request ${existing.id}`);
    this.name = 'IdempotencyKeyTaken';
  }
}

/**
 * Inserts one QUEUED row and returns it. Never overwrites: a duplicate id fails, and a
 * duplicate (account, idempotency key) fails with `IdempotencyKeyTaken` carrying the row
 * that won (the unique index decides, so two racing submissions cannot both get in). The
 * insert is ON CONFLICT DO NOTHING, so it can run inside a caller's transaction (with the
 * reservation, see queue/submit.ts) on PostgreSQL too: a conflict does not abort the
 * transaction, and the winner can be read in it; the throw then rolls it back.
 */
export async function createRequest(db: Db, r: NewRequest, now = Date.now()): Promise<RequestRow> {
  for (const [k, v] of [['price_micro', r.price_micro], ['seed', r.seed]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${k} must be a non-negative safe integer, got ${v}`);
  }
  const row = await db
    .insertInto('requests')
    .values({
      id: r.id,
      account_id: r.account_id,
      key_id: r.key_id,
      route: r.route,
      model: r.model ?? DEFAULT_MODEL_SLUG,
      status: 'QUEUED',
      params: JSON.stringify(r.params),
      seed: r.seed,
      width: r.width,
      height: r.height,
      price_micro: r.price_micro,
      webhook_url: r.webhook_url ?? null,
      idempotency_key: r.idempotency_key ?? null,
      idempotency_hash: r.idempotency_hash ?? null,
      hold_until: r.hold_until ?? null,
      attempts: 0,
      created_at: now,
      expires_at: now + (r.retention_ms ?? DEFAULT_RETENTION_MS),
    })
    .onConflict((oc) => oc.doNothing())
    .returningAll()
    .executeTakeFirst();
  if (row) return row;
  if (r.idempotency_key) {
    const existing = await findByIdempotencyKey(db, r.account_id, r.idempotency_key);
    if (existing && existing.id !== r.id) throw new IdempotencyKeyTaken(existing);
  }
  throw new Error(`request ${r.id} already exists`);
}

/** One row by id, or null. */
export async function getRequest(db: Db, id: string): Promise<RequestRow | null> {
  return (await db.selectFrom('requests').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

/** The row only if it belongs to `accountId`: another account's id reads as missing (404). */
export async function getRequestForAccount(db: Db, id: string, accountId: string): Promise<RequestRow | null> {
  return (
    (await db.selectFrom('requests').selectAll().where('id', '=', id).where('account_id', '=', accountId).executeTakeFirst()) ??
    null
  );
}

/** The account's request that holds this Idempotency-Key, or null. */
export async function findByIdempotencyKey(db: Db, accountId: string, key: string): Promise<RequestRow | null> {
  return (
    (await db
      .selectFrom('requests')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('idempotency_key', '=', key)
      .executeTakeFirst()) ?? null
  );
}

/**
 * Takes the oldest QUEUED row for `workerId`: PROCESSING, attempts + 1, started_at and a
 * lease until now + leaseMs. One UPDATE … WHERE id = (oldest queued) AND status = 'QUEUED'
 * … RETURNING, so a row is handed to at most one claimer: SQLite runs the statement under
 * its write lock; on PostgreSQL a concurrent claimer's re-check of `status` fails and it
 * gets no row, hence the short retry while work remains. Null when the queue is empty.
 * `model`: only that model's queue (each engine serves one model); absent: any.
 */
export async function claimNext(db: Db, workerId: string, leaseMs: number, now = Date.now(), model?: string): Promise<RequestRow | null> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const row = await statusUpdate(db, ['QUEUED'], 'PROCESSING', { worker_id: workerId, lease_until: now + leaseMs }, now)
      .where('id', '=', (eb) =>
        eb
          .selectFrom('requests as q')
          .select('q.id')
          .where('q.status', '=', 'QUEUED')
          .$if(model !== undefined, (q) => q.where('q.model', '=', model!))
          .orderBy('q.created_at')
          .orderBy('q.id')
          .limit(1),
      )
      .returningAll()
      .executeTakeFirst();
    if (row) return row;
    const left = await db
      .selectFrom('requests')
      .select('id')
      .where('status', '=', 'QUEUED')
      .$if(model !== undefined, (q) => q.where('model', '=', model!))
      .limit(1)
      .executeTakeFirst();
    if (!left) return null;
  }
  return null;
}

/**
 * The oldest QUEUED rows in queue order, at most `limit`: the candidates a batch is picked
 * from (queue/batching.ts). A read only; claimBatch takes the rows picked.
 */
export async function oldestQueued(db: Db, limit: number, model?: string): Promise<RequestRow[]> {
  return db
    .selectFrom('requests')
    .selectAll()
    .where('status', '=', 'QUEUED')
    .$if(model !== undefined, (q) => q.where('model', '=', model!))
    .orderBy('created_at')
    .orderBy('id')
    .limit(limit)
    .execute();
}

/**
 * Takes, of the rows `ids`, those still QUEUED for `workerId`, as claimNext takes one:
 * PROCESSING, attempts + 1, started_at and a lease until now + leaseMs. One UPDATE … WHERE
 * id IN ids AND status = 'QUEUED' … RETURNING, so each row is handed to at most one claimer
 * (the same argument as claimNext's); a row taken, cancelled or ended meanwhile is left out.
 * Returns the rows taken, in queue order.
 */
export async function claimBatch(db: Db, ids: readonly string[], workerId: string, leaseMs: number, now = Date.now()): Promise<RequestRow[]> {
  if (ids.length === 0) return [];
  const rows = await statusUpdate(db, ['QUEUED'], 'PROCESSING', { worker_id: workerId, lease_until: now + leaseMs }, now)
    .where('id', 'in', [...ids])
    .returningAll()
    .execute();
  return rows.sort((a, b) => Number(a.created_at) - Number(b.created_at) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * Gives back a claim that never ran (a fleet worker that found another worker holding the
 * row's job, see worker/fleet-worker.ts): PROCESSING → QUEUED with the attempt it counted
 * taken back, guarded by that claim (worker and attempt number), so a row claimed since by
 * anyone else is left alone. Returns whether it moved.
 */
export async function unclaim(db: Db, id: string, claim: { workerId: string; attempts: number }, now = Date.now()): Promise<boolean> {
  const res = await statusUpdate(db, ['PROCESSING'], 'QUEUED', { attempts: claim.attempts - 1, started_at: null }, now)
    .where('id', '=', id)
    .where('worker_id', '=', claim.workerId)
    .where('attempts', '=', claim.attempts)
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

export type ClaimById =
  | { claimed: true; row: RequestRow }
  /** It already ended, or is gone: nothing to do. */
  | { claimed: false; reason: 'ended' }
  /** Still QUEUED or PROCESSING, but it has been started `maxAttempts` times: fail it. */
  | { claimed: false; reason: 'exhausted'; row: RequestRow };

/**
 * Takes request `id` for `workerId` (a fleet worker handed this job by the queue):
 * PROCESSING, attempts + 1, started_at, a lease. One conditional UPDATE … RETURNING that
 * also takes a row left PROCESSING by a worker presumed dead — the queue hands a job out
 * again only after its previous holder lost its lock, and every later write of the old
 * holder is guarded by `worker_id` (transition's `owner`), so it can no longer end the
 * request. Refused once the row has been started `maxAttempts` times.
 */
export async function claimById(db: Db, id: string, workerId: string, limits: { leaseMs: number; maxAttempts: number }, now = Date.now()): Promise<ClaimById> {
  const row = await statusUpdate(db, ['QUEUED', 'PROCESSING'], 'PROCESSING', { worker_id: workerId, lease_until: now + limits.leaseMs }, now)
    .where('id', '=', id)
    .where('attempts', '<', limits.maxAttempts)
    .returningAll()
    .executeTakeFirst();
  if (row) return { claimed: true, row };
  const current = await getRequest(db, id);
  if (current && !isTerminal(current.status)) return { claimed: false, reason: 'exhausted', row: current };
  return { claimed: false, reason: 'ended' };
}

/** What a transition may write besides the status (never the identity of the row). */
export type TransitionFields = Omit<Updateable<RequestsTable>, 'id' | 'status' | 'account_id' | 'key_id' | 'created_at'>;

/**
 * The one writer of a request's status: every status change of the store (claims,
 * transitions, start-up recovery, requeues) is an UPDATE built here, so the state table
 * (`contract/request-states.ts`) is checked and each state's own columns are written the
 * same way everywhere: entering PROCESSING stamps started_at and counts an attempt; a
 * terminal state stamps completed_at; going back to QUEUED clears the worker and its lease.
 * The UPDATE is conditional on the row being in one of `from`; callers narrow it further
 * (which row, which owner) and run it. Throws if any from → to is not in the table (a bug,
 * not a race).
 */
function statusUpdate(db: Db, from: readonly RequestStatus[], to: RequestStatus, fields: TransitionFields, now: number) {
  const illegal = from.filter((f) => !canTransition(f, to));
  if (from.length === 0 || illegal.length > 0) throw new Error(`illegal request transition ${illegal.join('|') || '(none)'} → ${to}`);
  return db
    .updateTable('requests')
    .set((eb) => ({
      ...fields,
      status: to,
      ...(to === 'PROCESSING' ? { started_at: now, attempts: eb('attempts', '+', 1) } : {}),
      ...(isTerminal(to) ? { completed_at: now } : {}),
      ...(to === 'QUEUED' ? { worker_id: null, lease_until: null } : {}),
    }))
    .where('status', 'in', [...from]);
}

/**
 * Moves `id` from one of `from` to `to` and writes `fields`, as one conditional UPDATE
 * (… WHERE id = ? AND status IN from [AND worker_id = owner]). Returns whether it
 * happened: false means the row was elsewhere (e.g. cancelled meanwhile, or taken over by
 * another worker after this one was presumed dead) or is gone, and nothing was written.
 * Throws if any from → to is not in the state table (a bug, not a race).
 */
export async function transition(
  db: Db,
  id: string,
  from: readonly RequestStatus[],
  to: RequestStatus,
  fields: TransitionFields = {},
  now = Date.now(),
  owner?: string,
): Promise<boolean> {
  let q = statusUpdate(db, from, to, fields, now).where('id', '=', id);
  if (owner !== undefined) q = q.where('worker_id', '=', owner);
  const res = await q.executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/**
 * 1-based position of `id` among the QUEUED rows of its model's queue, in queue order; 0
 * when it is not queued (or unknown). One SELECT, so the count and the row's own status
 * come from one snapshot.
 */
export async function queuePosition(db: Db, id: string): Promise<number> {
  const row = await db
    .selectFrom('requests as me')
    .innerJoin('requests as q', (j) => j.on('q.status', '=', 'QUEUED').onRef('q.model', '=', 'me.model'))
    .select((eb) => eb.fn.countAll().as('n'))
    .where('me.id', '=', id)
    .where('me.status', '=', 'QUEUED')
    .where((eb) =>
      eb.or([
        eb('q.created_at', '<', eb.ref('me.created_at')),
        eb.and([eb('q.created_at', '=', eb.ref('me.created_at')), eb('q.id', '<=', eb.ref('me.id'))]),
      ]),
    )
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/**
 * How many rows are in each status (all five, or only those in `only`; each asked-for
 * status is present, zero included). One grouped SELECT.
 */
export async function countByStatus(
  db: Db,
  only: readonly RequestStatus[] = REQUEST_STATUSES,
): Promise<Partial<Record<RequestStatus, number>>> {
  const rows = await db
    .selectFrom('requests')
    .select(['status', (eb) => eb.fn.countAll().as('n')])
    .where('status', 'in', [...only])
    .groupBy('status')
    .execute();
  const out: Partial<Record<RequestStatus, number>> = {};
  for (const s of only) out[s] = 0;
  for (const r of rows) out[r.status] = Number(r.n);
  return out;
}

/**
 * At start-up, before taking work: rows a previous run left PROCESSING go back to QUEUED
 * while attempts < maxAttempts, else to FAILED (error_code engine_failed). Run it inside
 * the transaction that also releases the credits of `failed` (queue/lifecycle.ts), so the
 * rows and the ledger move together. Returns the ids of each.
 */
export async function recoverOnStartup(
  trx: Transaction<Database>,
  opts: { maxAttempts: number },
  now = Date.now(),
): Promise<{ requeued: string[]; failed: string[] }> {
  const failed = await statusUpdate(
    trx,
    ['PROCESSING'],
    'FAILED',
    { error_code: 'engine_failed', error_message: 'the server stopped while this request was running', worker_id: null, lease_until: null },
    now,
  )
    .where('attempts', '>=', opts.maxAttempts)
    .returning('id')
    .execute();
  const requeued = await statusUpdate(trx, ['PROCESSING'], 'QUEUED', {}, now)
    .returning('id')
    .execute();
  return { requeued: requeued.map((r) => r.id).sort(), failed: failed.map((r) => r.id).sort() };
}

/**
 * Deletes finished (terminal) rows whose expires_at ≤ now, in one DELETE … RETURNING, and
 * returns their ids and output keys so the caller can delete the stored outputs. Rows still
 * QUEUED or PROCESSING are never deleted: their credits are still reserved.
 */
export async function expireOlderThan(db: Db, now = Date.now()): Promise<{ ids: string[]; outputKeys: string[] }> {
  const rows = await db
    .deleteFrom('requests')
    .where('expires_at', '<=', now)
    .where('status', 'in', [...TERMINAL])
    .returning(['id', 'output_key'])
    .execute();
  return {
    ids: rows.map((r) => r.id),
    outputKeys: rows.map((r) => r.output_key).filter((k): k is string => k !== null),
  };
}

/**
 * Puts back one claim of `id` — the worker and attempt number claimById wrote — when the
 * queue took the job back from that worker (its lock expired: presumed dead), so the row
 * counts as waiting again instead of running for nobody. One conditional UPDATE … WHERE
 * status = 'PROCESSING' AND worker_id = ? AND attempts = ?: a row claimed again since (by
 * another worker, or by the same one: every claim adds an attempt) or ended is left alone.
 * Like every move to QUEUED, it clears the worker and its lease. Returns whether it moved.
 */
export async function requeueClaim(db: Db, id: string, claim: { workerId: string; attempts: number }, now = Date.now()): Promise<boolean> {
  const res = await statusUpdate(db, ['PROCESSING'], 'QUEUED', {}, now)
    .where('id', '=', id)
    .where('worker_id', '=', claim.workerId)
    .where('attempts', '=', claim.attempts)
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/**
 * Notes on a COMPLETED row that its held answer was never delivered (queue/delivery.ts):
 * no cost, no output, error_code `undelivered`. Its status stays COMPLETED. Returns whether
 * the row was COMPLETED.
 */
export async function markUndelivered(db: Db, id: string, why: string): Promise<boolean> {
  const res = await db
    .updateTable('requests')
    .set({ cost_micro: 0, output_key: null, error_code: 'undelivered', error_message: why })
    .where('id', '=', id)
    .where('status', '=', 'COMPLETED')
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}
