/**
 * Credits in integer micro-credits (1 credit = 1,000,000). The spendable balance lives on
 * the account; the ledger records each change once, keyed by (request_id, kind):
 *
 *   reserve  −price   before the job exists           (406 when the balance is short)
 *   settle      0     on COMPLETED: the reservation becomes the charge
 *   release  +price   on FAILED / CANCELLED: the reservation comes back
 *
 * Each is one transaction, and settle and release exclude each other, so a replay or a
 * crash between steps can neither charge twice nor lose a refund.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database, LedgerKind } from '../store/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

export async function balance(db: Db, accountId: string): Promise<number> {
  const row = await db.selectFrom('accounts').select('balance_micro').where('id', '=', accountId).executeTakeFirst();
  return row ? Number(row.balance_micro) : 0;
}

export async function grant(db: Kysely<Database>, accountId: string, micro: number, note: string | null = null, now = Date.now()): Promise<void> {
  if (!Number.isSafeInteger(micro) || micro <= 0) throw new Error('grant must be a positive whole number of micro-credits');
  await db.transaction().execute(async (trx) => {
    const res = await trx.updateTable('accounts').set((eb) => ({ balance_micro: eb('balance_micro', '+', micro) })).where('id', '=', accountId).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw new Error(`no account ${accountId}`);
    await trx.insertInto('ledger').values({ account_id: accountId, request_id: null, kind: 'grant', amount_micro: micro, note, created_at: now }).execute();
  });
}

async function entries(trx: Db, requestId: string): Promise<Map<LedgerKind, { account_id: string; amount_micro: number }>> {
  const rows = await trx.selectFrom('ledger').select(['kind', 'account_id', 'amount_micro']).where('request_id', '=', requestId).execute();
  return new Map(rows.map((r) => [r.kind, { account_id: r.account_id, amount_micro: Number(r.amount_micro) }]));
}

export type ReserveResult = { ok: true; balanceMicro: number } | { ok: false; balanceMicro: number };

/** Takes `priceMicro` from the balance for `requestId`; idempotent for the same request. */
export async function reserve(db: Kysely<Database>, o: { accountId: string; requestId: string; priceMicro: number }, now = Date.now()): Promise<ReserveResult> {
  if (!Number.isSafeInteger(o.priceMicro) || o.priceMicro < 0) throw new Error('price must be a whole number of micro-credits');
  return db.transaction().execute(async (trx) => {
    if ((await entries(trx, o.requestId)).has('reserve')) return { ok: true, balanceMicro: await balance(trx, o.accountId) };
    const res = await trx
      .updateTable('accounts')
      .set((eb) => ({ balance_micro: eb('balance_micro', '-', o.priceMicro) }))
      .where('id', '=', o.accountId)
      .where('balance_micro', '>=', o.priceMicro)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) return { ok: false, balanceMicro: await balance(trx, o.accountId) };
    await trx
      .insertInto('ledger')
      .values({ account_id: o.accountId, request_id: o.requestId, kind: 'reserve', amount_micro: -o.priceMicro, note: null, created_at: now })
      .execute();
    return { ok: true, balanceMicro: await balance(trx, o.accountId) };
  });
}

/** Turns the reservation into the charge. False when there is none or it was released. */
export async function settle(db: Kysely<Database>, requestId: string, now = Date.now()): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const e = await entries(trx, requestId);
    const r = e.get('reserve');
    if (!r || e.has('release')) return false;
    if (e.has('settle')) return true;
    await trx.insertInto('ledger').values({ account_id: r.account_id, request_id: requestId, kind: 'settle', amount_micro: 0, note: null, created_at: now }).execute();
    return true;
  });
}

/** Gives the reservation back. False when there is none, or it was settled or released. */
export async function release(db: Kysely<Database>, requestId: string, now = Date.now()): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const e = await entries(trx, requestId);
    const r = e.get('reserve');
    if (!r || e.has('settle') || e.has('release')) return false;
    const amount = -r.amount_micro;
    await trx.updateTable('accounts').set((eb) => ({ balance_micro: eb('balance_micro', '+', amount) })).where('id', '=', r.account_id).execute();
    await trx.insertInto('ledger').values({ account_id: r.account_id, request_id: requestId, kind: 'release', amount_micro: amount, note: null, created_at: now }).execute();
    return true;
  });
}

export interface Usage {
  account_id: string;
  balance_micro: number;
  requests: Record<string, number>;
  charged_micro: number;
  granted_micro: number;
}

export async function usage(db: Kysely<Database>, accountId: string, o: { sinceMs?: number }): Promise<Usage> {
  const since = o.sinceMs ?? 0;
  const byStatus = await db
    .selectFrom('requests')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .where('account_id', '=', accountId)
    .where('created_at', '>=', since)
    .groupBy('status')
    .execute();
  const charged = await db
    .selectFrom('ledger as s')
    .innerJoin('ledger as r', (j) => j.onRef('r.request_id', '=', 's.request_id').on('r.kind', '=', 'reserve'))
    .select((eb) => eb.fn.sum<number>('r.amount_micro').as('total'))
    .where('s.kind', '=', 'settle')
    .where('s.account_id', '=', accountId)
    .where('s.created_at', '>=', since)
    .executeTakeFirst();
  const granted = await db
    .selectFrom('ledger')
    .select((eb) => eb.fn.sum<number>('amount_micro').as('total'))
    .where('kind', '=', 'grant')
    .where('account_id', '=', accountId)
    .where('created_at', '>=', since)
    .executeTakeFirst();
  return {
    account_id: accountId,
    balance_micro: await balance(db, accountId),
    requests: Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)])),
    charged_micro: -Number(charged?.total ?? 0),
    granted_micro: Number(granted?.total ?? 0),
  };
}
