/**
 * Credits, in integer micro-credits (1 credit = 1,000,000; formatting and parsing in billing/pricing.ts). The spendable
 * balance lives on the account row; the ledger records every change once:
 *
 *   grant    +n              operator adds credits                    (no request)
 *   reserve  −price          before the job is queued; 406 if short    phase open
 *   settle   +(price − cost) on COMPLETED: the reservation is charged   phase close
 *                            (a held synchronous call: once its answer goes out)
 *   release  +price          on FAILED / CANCELLED, or a held answer    phase close
 *                            its client never received: it comes back
 *
 * Each operation is atomic and keyed by request id: `reserve`, `settle` and `release` run as
 * their own transaction, and `reserveIn`, `settleIn` and `releaseIn` join a caller's, so
 * that a request's row and its ledger entry commit together (submission inserts the row
 * with its reservation; every end moves the row with its settle or release, see
 * queue/lifecycle.ts). UNIQUE(request_id, kind) makes
 * each step happen at most once; UNIQUE(request_id, phase) makes settle and release
 * exclude each other. So replays, retries after a crash, and races between connections
 * can neither charge twice nor lose a refund, and `balance_micro >= 0` (a CHECK) means no
 * sequence of reserves can overdraw an account. Invariant, tested: balance = sum(ledger).
 */
import type { Usage } from '../contract/admin-schema.js';
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database, LedgerKind } from '../store/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

function assertMicro(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be a whole number of micro-credits ≥ ${min}, got ${v}`);
}

/** The spendable balance in micro-credits; null for an unknown account. */
export async function findBalance(db: Db, accountId: string): Promise<number | null> {
  const row = await db.selectFrom('accounts').select('balance_micro').where('id', '=', accountId).executeTakeFirst();
  return row ? Number(row.balance_micro) : null;
}

/** The spendable balance in micro-credits; throws for an unknown account. */
export async function balance(db: Db, accountId: string): Promise<number> {
  const b = await findBalance(db, accountId);
  if (b === null) throw new Error(`no account ${accountId}`);
  return b;
}

/** `grant` inside a caller's transaction (account creation uses it). */
export async function grantIn(trx: Transaction<Database>, accountId: string, micro: number, note: string | null, now: number): Promise<number> {
  assertMicro('grant', micro, 1);
  const before = await findBalance(trx, accountId);
  if (before === null) throw new Error(`no account ${accountId}`);
  if (micro > MAX_BALANCE_MICRO - before) throw new BalanceOverflow(before, micro);
  const row = await trx
    .updateTable('accounts')
    .set((eb) => ({ balance_micro: eb('balance_micro', '+', micro) }))
    .where('id', '=', accountId)
    .returning('balance_micro')
    .executeTakeFirst();
  if (!row) throw new Error(`no account ${accountId}`);
  const after = Number(row.balance_micro);
  assertMicro('the new balance', after, 0);
  await trx
    .insertInto('ledger')
    .values({ id: randomUUID(), account_id: accountId, request_id: null, kind: 'grant', phase: null, amount_micro: micro, note, created_at: now })
    .execute();
  return after;
}

/** Adds `micro` (> 0) to the balance, recorded as a grant. One transaction. Returns the new balance. */
export async function grant(db: Kysely<Database>, accountId: string, micro: number, note: string | null = null, now = Date.now()): Promise<number> {
  return db.transaction().execute((trx) => grantIn(trx, accountId, micro, note, now));
}

async function entries(db: Db, requestId: string): Promise<Map<LedgerKind, { account_id: string; amount_micro: number }>> {
  const rows = await db.selectFrom('ledger').select(['kind', 'account_id', 'amount_micro']).where('request_id', '=', requestId).execute();
  return new Map(rows.map((r) => [r.kind, { account_id: r.account_id, amount_micro: Number(r.amount_micro) }]));
}

export type ReserveResult = { ok: true; balanceMicro: number } | { ok: false; balanceMicro: number };

/** The balance is below the price: thrown inside a transaction, so that it rolls back. */
export class InsufficientBalance extends Error {
  constructor(readonly balanceMicro: number) {
    super('insufficient balance');
    this.name = 'InsufficientBalance';
  }
}

/** The largest balance an account may hold (2^53−1 micro-credits: every amount stays an exact JS number). */
export const MAX_BALANCE_MICRO = Number.MAX_SAFE_INTEGER;

/** A grant would lift the balance above MAX_BALANCE_MICRO. */
export class BalanceOverflow extends RangeError {
  constructor(readonly balanceMicro: number, readonly grantMicro: number) {
    super(`a grant of ${grantMicro} micro-credits would lift the balance of ${balanceMicro} above ${MAX_BALANCE_MICRO}`);
    this.name = 'BalanceOverflow';
  }
}

/**
 * `reserve` inside a caller's transaction (submission inserts the request row in the same
 * one): the reserve entry is inserted (at most once per request), then the balance is
 * lowered only where balance ≥ price. Throws InsufficientBalance when it is short, so the
 * caller's transaction rolls back whole. A replay for an already reserved request changes
 * nothing; for a request already settled or released it throws. Returns the balance after.
 */
export async function reserveIn(
  trx: Transaction<Database>,
  options: { accountId: string; requestId: string; priceMicro: number },
  now = Date.now(),
): Promise<number> {
  assertMicro('price', options.priceMicro, 0);
  // Checked first for a clear message (the foreign key would refuse it anyway).
  if ((await findBalance(trx, options.accountId)) === null) throw new Error(`no account ${options.accountId}`);
  const ins = await trx
    .insertInto('ledger')
    .values({
      id: randomUUID(),
      account_id: options.accountId,
      request_id: options.requestId,
      kind: 'reserve',
      phase: 'open',
      amount_micro: -options.priceMicro,
      note: null,
      created_at: now,
    })
    .onConflict((oc) => oc.doNothing())
    .executeTakeFirst();
  if (Number(ins.numInsertedOrUpdatedRows ?? 0) === 0) {
    const e = await entries(trx, options.requestId);
    if (e.has('settle') || e.has('release')) throw new Error(`request ${options.requestId} was already settled or released`);
    return balance(trx, e.get('reserve')?.account_id ?? options.accountId);
  }
  const row = await trx
    .updateTable('accounts')
    .set((eb) => ({ balance_micro: eb('balance_micro', '-', options.priceMicro) }))
    .where('id', '=', options.accountId)
    .where('balance_micro', '>=', options.priceMicro)
    .returning('balance_micro')
    .executeTakeFirst();
  if (!row) throw new InsufficientBalance(await balance(trx, options.accountId));
  return Number(row.balance_micro);
}

/**
 * Takes `priceMicro` from the balance for `requestId`, in one transaction (see reserveIn);
 * when it is short, `ok: false` carries the balance (for the 406 message).
 */
export async function reserve(
  db: Kysely<Database>,
  options: { accountId: string; requestId: string; priceMicro: number },
  now = Date.now(),
): Promise<ReserveResult> {
  try {
    return { ok: true, balanceMicro: await db.transaction().execute((trx) => reserveIn(trx, options, now)) };
  } catch (err) {
    if (err instanceof InsufficientBalance) return { ok: false, balanceMicro: err.balanceMicro };
    throw err;
  }
}

/**
 * `settled`: this call charged the request. `already_settled`: an earlier call did (a
 * replay; nothing changed). `released`: the reservation was given back, so nothing can be
 * charged any more. `not_reserved`: there was never a reservation.
 */
export type SettleOutcome = 'settled' | 'already_settled' | 'released' | 'not_reserved';

/**
 * Charges the reservation of `requestId` inside a caller's transaction: `costMicro`
 * (default: all of it, at most all of it) is kept and the rest goes back to the balance.
 * Idempotent, and refused once the request was released (see SettleOutcome).
 */
export async function settleIn(trx: Transaction<Database>, requestId: string, costMicro?: number, now = Date.now()): Promise<SettleOutcome> {
  const e = await entries(trx, requestId);
  const r = e.get('reserve');
  if (!r) return 'not_reserved';
  if (e.has('settle')) return 'already_settled';
  if (e.has('release')) return 'released';
  const reserved = -r.amount_micro;
  const cost = costMicro ?? reserved;
  assertMicro('cost', cost, 0);
  if (cost > reserved) throw new RangeError(`cost ${cost} exceeds the ${reserved} micro-credits reserved for ${requestId}`);
  if (!(await closeReservation(trx, r.account_id, requestId, 'settle', reserved - cost, now))) {
    // Lost a race on another connection (only possible where writes are not serialised).
    return (await entries(trx, requestId)).has('settle') ? 'already_settled' : 'released';
  }
  return 'settled';
}

/**
 * Writes the closing entry of a reservation (`settle` or `release`, UNIQUE per request's
 * phase) and gives `backMicro` back to the balance. False, with nothing written, when
 * another close won the race for the phase.
 */
async function closeReservation(
  trx: Transaction<Database>,
  accountId: string,
  requestId: string,
  kind: 'settle' | 'release',
  backMicro: number,
  now: number,
): Promise<boolean> {
  const ins = await trx
    .insertInto('ledger')
    .values({ id: randomUUID(), account_id: accountId, request_id: requestId, kind, phase: 'close', amount_micro: backMicro, note: null, created_at: now })
    .onConflict((oc) => oc.doNothing())
    .executeTakeFirst();
  if (Number(ins.numInsertedOrUpdatedRows ?? 0) === 0) return false;
  if (backMicro > 0) {
    await trx.updateTable('accounts').set((eb) => ({ balance_micro: eb('balance_micro', '+', backMicro) })).where('id', '=', accountId).execute();
  }
  return true;
}

/** `settleIn` as its own transaction. */
export async function settle(db: Kysely<Database>, requestId: string, costMicro?: number, now = Date.now()): Promise<SettleOutcome> {
  return db.transaction().execute((trx) => settleIn(trx, requestId, costMicro, now));
}

/** `released`: this call gave the reservation back; the others mean nothing changed. */
export type ReleaseOutcome = 'released' | 'already_released' | 'settled' | 'not_reserved';

/**
 * Gives the reservation of `requestId` back to the balance inside a caller's transaction,
 * unless it was settled or released before. Idempotent: safe to call again after a crash.
 */
export async function releaseIn(trx: Transaction<Database>, requestId: string, now = Date.now()): Promise<ReleaseOutcome> {
  const e = await entries(trx, requestId);
  const r = e.get('reserve');
  if (!r) return 'not_reserved';
  if (e.has('release')) return 'already_released';
  if (e.has('settle')) return 'settled';
  if (!(await closeReservation(trx, r.account_id, requestId, 'release', -r.amount_micro, now))) {
    return (await entries(trx, requestId)).has('release') ? 'already_released' : 'settled';
  }
  return 'released';
}

/** `releaseIn` as its own transaction. */
export async function release(db: Kysely<Database>, requestId: string, now = Date.now()): Promise<ReleaseOutcome> {
  return db.transaction().execute((trx) => releaseIn(trx, requestId, now));
}


/** A summary of an account's requests and money since `since` (epoch ms). Null for an unknown account. */
export async function usage(db: Db, accountId: string, options: { since?: number } = {}): Promise<Usage | null> {
  const since = options.since ?? 0;
  const bal = await findBalance(db, accountId);
  if (bal === null) return null;
  const byStatus = await db
    .selectFrom('requests')
    .select(['status', (eb) => eb.fn.countAll().as('n')])
    .where('account_id', '=', accountId)
    .where('created_at', '>=', since)
    .groupBy('status')
    .execute();
  const byKind = await db
    .selectFrom('ledger')
    .select(['kind', (eb) => eb.fn.sum('amount_micro').as('total')])
    .where('account_id', '=', accountId)
    .where('created_at', '>=', since)
    .groupBy('kind')
    .execute();
  const sums = new Map(byKind.map((r) => [r.kind, Number(r.total ?? 0)]));
  // Charged = the reservations of the requests settled in the window, minus what settle returned.
  const charged = await db
    .selectFrom('ledger as s')
    .innerJoin('ledger as r', (j) => j.onRef('r.request_id', '=', 's.request_id').on('r.kind', '=', 'reserve'))
    .select([(eb) => eb.fn.sum(eb('r.amount_micro', '+', eb.ref('s.amount_micro'))).as('total'), (eb) => eb.fn.countAll().as('n')])
    .where('s.kind', '=', 'settle')
    .where('s.account_id', '=', accountId)
    .where('s.created_at', '>=', since)
    .executeTakeFirst();
  const held = await db
    .selectFrom('ledger as r')
    .select((eb) => eb.fn.sum('r.amount_micro').as('total'))
    .where('r.account_id', '=', accountId)
    .where('r.kind', '=', 'reserve')
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('ledger as c').select('c.id').whereRef('c.request_id', '=', 'r.request_id').where('c.phase', '=', 'close'))),
    )
    .executeTakeFirst();
  return {
    account_id: accountId,
    since,
    balance_micro: bal,
    held_micro: 0 - Number(held?.total ?? 0),
    granted_micro: sums.get('grant') ?? 0,
    charged_micro: 0 - Number(charged?.total ?? 0),
    refunded_micro: sums.get('release') ?? 0,
    requests: Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)])),
    settled_requests: Number(charged?.n ?? 0),
  };
}
