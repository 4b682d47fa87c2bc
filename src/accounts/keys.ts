/**
 * API keys: 32 random bytes, shown once, stored only as a SHA-256 hash plus a display
 * prefix. Lookup is by hash; the stored and presented hashes are compared in constant time.
 * A revoked key fails from the next request on (every request reads the row).
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { AccountsTable, ApiKeysTable, Database } from '../store/schema.js';

export const KEY_PREFIX = 'kl_';

export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function displayPrefix(key: string): string {
  return `${key.slice(0, KEY_PREFIX.length + 6)}…`;
}

export interface Authenticated {
  account: Selectable<AccountsTable>;
  key: Selectable<ApiKeysTable>;
}

export async function authenticate(db: Kysely<Database>, presented: string): Promise<Authenticated | null> {
  if (presented.length > 256) return null;
  const h = hashKey(presented);
  const key = await db.selectFrom('api_keys').selectAll().where('key_hash', '=', h).executeTakeFirst();
  if (!key || key.revoked_at !== null) return null;
  if (!timingSafeEqual(Buffer.from(key.key_hash, 'hex'), Buffer.from(h, 'hex'))) return null;
  const account = await db.selectFrom('accounts').selectAll().where('id', '=', key.account_id).executeTakeFirst();
  return account ? { account, key } : null;
}

export interface CreateKeyOptions {
  /** Existing account; a new one is made when absent. */
  accountId?: string;
  creditsMicro?: number;
  rpm?: number | null;
  concurrency?: number | null;
  name?: string | null;
  admin?: boolean;
}

export interface CreatedKey {
  key: string;
  key_id: string;
  account_id: string;
  prefix: string;
  name: string | null;
  admin: boolean;
  webhook_secret: string;
}

/** Creates a key (and its account when needed) in one transaction. */
export async function createKey(db: Kysely<Database>, o: CreateKeyOptions, now = Date.now()): Promise<CreatedKey> {
  const key = generateKey();
  const keyId = `key_${randomUUID()}`;
  return db.transaction().execute(async (trx) => {
    let accountId = o.accountId;
    let secret: string;
    if (accountId) {
      const acc = await trx.selectFrom('accounts').select(['id', 'webhook_secret']).where('id', '=', accountId).executeTakeFirst();
      if (!acc) throw new Error(`no account ${accountId}`);
      secret = acc.webhook_secret;
      if (o.rpm !== undefined || o.concurrency !== undefined) {
        await trx
          .updateTable('accounts')
          .set({ ...(o.rpm !== undefined ? { rpm: o.rpm } : {}), ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}) })
          .where('id', '=', accountId)
          .execute();
      }
    } else {
      accountId = `acct_${randomUUID()}`;
      secret = `whsec_${randomBytes(24).toString('base64')}`;
      await trx
        .insertInto('accounts')
        .values({
          id: accountId,
          name: o.name ?? null,
          balance_micro: 0,
          rpm: o.rpm ?? null,
          concurrency: o.concurrency ?? null,
          webhook_secret: secret,
          created_at: now,
        })
        .execute();
    }
    await trx
      .insertInto('api_keys')
      .values({
        id: keyId,
        account_id: accountId,
        key_hash: hashKey(key),
        prefix: displayPrefix(key),
        name: o.name ?? null,
        is_admin: o.admin ? 1 : 0,
        created_at: now,
        revoked_at: null,
        last_used_at: null,
      })
      .execute();
    if (o.creditsMicro && o.creditsMicro > 0) {
      await trx.updateTable('accounts').set((eb) => ({ balance_micro: eb('balance_micro', '+', o.creditsMicro!) })).where('id', '=', accountId).execute();
      await trx
        .insertInto('ledger')
        .values({ account_id: accountId, request_id: null, kind: 'grant', amount_micro: o.creditsMicro, note: 'key created', created_at: now })
        .execute();
    }
    return { key, key_id: keyId, account_id: accountId, prefix: displayPrefix(key), name: o.name ?? null, admin: Boolean(o.admin), webhook_secret: secret };
  });
}

export async function listKeys(db: Kysely<Database>) {
  return db
    .selectFrom('api_keys')
    .innerJoin('accounts', 'accounts.id', 'api_keys.account_id')
    .select([
      'api_keys.id as key_id',
      'api_keys.prefix',
      'api_keys.name',
      'api_keys.is_admin',
      'api_keys.created_at',
      'api_keys.revoked_at',
      'accounts.id as account_id',
      'accounts.balance_micro',
      'accounts.rpm',
      'accounts.concurrency',
    ])
    .orderBy('api_keys.created_at')
    .execute();
}

/** Revokes by key id or display prefix (without the ellipsis). Returns how many keys. */
export async function revokeKey(db: Kysely<Database>, idOrPrefix: string, now = Date.now()): Promise<number> {
  const p = idOrPrefix.replace(/…$/, '');
  const res = await db
    .updateTable('api_keys')
    .set({ revoked_at: now })
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('id', '=', p), eb('prefix', '=', `${p}…`)]))
    .executeTakeFirst();
  return Number(res.numUpdatedRows);
}
