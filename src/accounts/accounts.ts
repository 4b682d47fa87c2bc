/**
 * Accounts: who pays. An account has a balance (ledger.ts), optional per-account limits
 * (null: the server defaults) and a webhook signing secret; API keys (keys.ts) belong to
 * an account.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Kysely, Selectable, Transaction } from 'kysely';
import type { AccountsTable, Database } from '../store/schema.js';
import { grantIn } from './ledger.js';

type Db = Kysely<Database> | Transaction<Database>;

export type Account = Selectable<AccountsTable>;

export interface NewAccount {
  name?: string | null;
  /** Opening balance in micro-credits (recorded as a grant). */
  creditsMicro?: number;
  rpm?: number | null;
  concurrency?: number | null;
}

/** A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes (standardwebhooks.com). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

function checkLimit(name: string, v: number | null | undefined): void {
  if (v !== null && v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new RangeError(`${name} must be a whole number ≥ 1, got ${v}`);
}

/** Creates an account (and its opening grant) inside the caller's transaction. */
export async function createAccountIn(trx: Transaction<Database>, a: NewAccount, now: number): Promise<Account> {
  checkLimit('rpm', a.rpm);
  checkLimit('concurrency', a.concurrency);
  const id = `acct_${randomUUID()}`;
  await trx
    .insertInto('accounts')
    .values({
      id,
      name: a.name ?? null,
      balance_micro: 0,
      rpm: a.rpm ?? null,
      concurrency: a.concurrency ?? null,
      webhook_secret: newWebhookSecret(),
      created_at: now,
    })
    .execute();
  if (a.creditsMicro) await grantIn(trx, id, a.creditsMicro, 'opening balance', now);
  return trx.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

/** Creates an account with its opening balance, in one transaction. */
export async function createAccount(db: Kysely<Database>, a: NewAccount = {}, now = Date.now()): Promise<Account> {
  return db.transaction().execute((trx) => createAccountIn(trx, a, now));
}

export async function getAccount(db: Db, id: string): Promise<Account | null> {
  return (await db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

export async function listAccounts(db: Db): Promise<Account[]> {
  return db.selectFrom('accounts').selectAll().orderBy('created_at').orderBy('id').execute();
}

/** Sets the account's limits; `undefined` leaves one as is, `null` returns it to the default. */
export async function setLimits(db: Db, id: string, l: { rpm?: number | null; concurrency?: number | null }): Promise<boolean> {
  checkLimit('rpm', l.rpm);
  checkLimit('concurrency', l.concurrency);
  const set: { rpm?: number | null; concurrency?: number | null } = {};
  if (l.rpm !== undefined) set.rpm = l.rpm;
  if (l.concurrency !== undefined) set.concurrency = l.concurrency;
  if (Object.keys(set).length === 0) return (await getAccount(db, id)) !== null;
  const res = await db.updateTable('accounts').set(set).where('id', '=', id).executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}
