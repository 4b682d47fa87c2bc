/**
 * API keys. A key is `kl_` + 43 base62 characters (32 random bytes: 256 bits), shown once
 * at creation. Only its SHA-256 (hex) and a display prefix (`kl_Ab12Cd…`) are stored, so a
 * copy of the database does not reveal usable keys. Authentication looks the key up by its
 * hash (the index never compares the secret itself) and compares the hashes again with
 * crypto.timingSafeEqual; revocation is read on every request, so it takes effect at once.
 *
 * A key may be limited to some of the served models (contract §2: another model is a 403):
 * `api_keys.models` holds their slugs, comma-separated (a slug has no comma, SLUG_PATTERN);
 * null means every model the server serves, now or later.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { ApiKeysTable, Database } from '../store/schema.js';
import { SLUG_PATTERN, type ServedModels } from '../contract/models.js';
import { type Account, createAccountIn, getAccount, setLimits } from './accounts.js';
import { grantIn } from './ledger.js';

export const KEY_PREFIX = 'kl_';
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** 62^43 > 2^256, so 43 digits hold any 32-byte value: every key has the same length. */
const KEY_DIGITS = 43;
/** Characters of the key body shown in the display prefix (~36 bits of the 256). */
const SHOWN = 6;
/** Keys longer than this are refused before hashing (ours are 46 characters). */
const MAX_PRESENTED = 256;
/** last_used_at is written at most this often per key, not on every request. */
const LAST_USED_RESOLUTION_MS = 60_000;

export type ApiKey = Selectable<ApiKeysTable>;

function base62(bytes: Buffer): string {
  let n = BigInt(`0x${bytes.toString('hex')}`);
  let out = '';
  for (let i = 0; i < KEY_DIGITS; i++) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out;
}

/** A new key: `kl_` + 32 random bytes in base62. */
export function generateKey(): string {
  return KEY_PREFIX + base62(randomBytes(32));
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** What lists and logs show instead of the key, e.g. `kl_Ab12Cd…`. */
export function displayPrefix(key: string): string {
  return `${key.slice(0, KEY_PREFIX.length + SHOWN)}…`;
}

/**
 * What is wrong with a key's model list, or null when every entry is a slug (and, given
 * `served`, a served one). An empty list is refused: a key that may use no model is a
 * mistake, and leaving the list out already means every model.
 */
export function keyModelsProblem(models: readonly string[], served?: ServedModels): string | null {
  if (models.length === 0) return 'must name at least one model (leave it out for every model)';
  const shown = (m: string) => JSON.stringify(m.slice(0, 100));
  const malformed = models.find((m) => !SLUG_PATTERN.test(m));
  if (malformed !== undefined) return `${shown(malformed)} is not a model slug (lower-case letters, digits, '.', '_' and '-')`;
  const unserved = served ? models.filter((m) => !served.get(m)) : [];
  if (served && unserved.length > 0) {
    return `${unserved.map(shown).join(', ')} ${unserved.length === 1 ? 'is not a served model' : 'are not served models'} (served: ${served.slugs.join(', ')})`;
  }
  return null;
}

/** The slugs a key row may use, or null for every served model. */
export function keyModels(column: string | null): string[] | null {
  return column === null ? null : column.split(',');
}

export interface Authenticated {
  account: Account;
  key: ApiKey;
}

/**
 * The account and key for a presented key, or null when it is unknown or revoked (the
 * caller answers 401 without saying which). Also records last_used_at, at most once a
 * minute per key.
 */
export async function authenticate(db: Kysely<Database>, presented: string, now = Date.now()): Promise<Authenticated | null> {
  if (presented.length === 0 || presented.length > MAX_PRESENTED) return null;
  const hash = hashKey(presented);
  const key = await db.selectFrom('api_keys').selectAll().where('key_hash', '=', hash).executeTakeFirst();
  if (!key || key.revoked_at !== null) return null;
  if (!timingSafeEqual(Buffer.from(key.key_hash, 'hex'), Buffer.from(hash, 'hex'))) return null;
  const account = await getAccount(db, key.account_id);
  if (!account) return null;
  if (key.last_used_at === null || now - key.last_used_at >= LAST_USED_RESOLUTION_MS) {
    await db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', key.id).execute();
    key.last_used_at = now;
  }
  return { account, key };
}

export interface CreateKeyOptions {
  /** Existing account to add the key to; a new account is created when absent. */
  accountId?: string;
  /** New account: its opening balance. Existing account: credits added to it (a grant). */
  creditsMicro?: number;
  /** Account limits; with an existing account they replace its current ones. */
  rpm?: number | null;
  concurrency?: number | null;
  /** The key's name (and the new account's name). */
  name?: string | null;
  admin?: boolean;
  /** The served models' slugs the key may use; null or absent: every model. */
  models?: readonly string[] | null;
}

export interface CreatedKey {
  /** The key itself: shown this once, never stored. */
  key: string;
  key_id: string;
  account_id: string;
  prefix: string;
  name: string | null;
  admin: boolean;
  /** The slugs the key may use; null: every served model. */
  models: string[] | null;
  balance_micro: number;
  rpm: number | null;
  concurrency: number | null;
  webhook_secret: string;
}

/**
 * Creates a key, and its account when `accountId` is absent, in one transaction. A model
 * list that is not all slugs is a RangeError (whether they are served is the caller's
 * check: this layer does not know the configuration).
 */
export async function createKey(db: Kysely<Database>, options: CreateKeyOptions = {}, now = Date.now()): Promise<CreatedKey> {
  const models = options.models === undefined || options.models === null ? null : [...new Set(options.models)];
  const problem = models === null ? null : keyModelsProblem(models);
  if (problem !== null) throw new RangeError(`models: ${problem}`);
  const key = generateKey();
  const keyId = `key_${randomUUID()}`;
  return db.transaction().execute(async (trx) => {
    let account: Account;
    if (options.accountId !== undefined) {
      const found = await getAccount(trx, options.accountId);
      if (!found) throw new Error(`no account ${options.accountId}`);
      await setLimits(trx, found.id, { rpm: options.rpm, concurrency: options.concurrency });
      if (options.creditsMicro) await grantIn(trx, found.id, options.creditsMicro, `key ${keyId} created`, now);
      account = (await getAccount(trx, found.id)) ?? found;
    } else {
      account = await createAccountIn(trx, { name: options.name ?? null, creditsMicro: options.creditsMicro ?? 0, rpm: options.rpm, concurrency: options.concurrency }, now);
    }
    await trx
      .insertInto('api_keys')
      .values({
        id: keyId,
        account_id: account.id,
        key_hash: hashKey(key),
        prefix: displayPrefix(key),
        name: options.name ?? null,
        is_admin: options.admin ? 1 : 0,
        created_at: now,
        revoked_at: null,
        last_used_at: null,
        models: models === null ? null : models.join(','),
      })
      .execute();
    return {
      key,
      key_id: keyId,
      account_id: account.id,
      prefix: displayPrefix(key),
      name: options.name ?? null,
      admin: Boolean(options.admin),
      models,
      balance_micro: Number(account.balance_micro),
      rpm: account.rpm,
      concurrency: account.concurrency,
      webhook_secret: account.webhook_secret,
    };
  });
}

/** A key as lists show it: never the key or its hash. */
export interface KeyInfo {
  key_id: string;
  prefix: string;
  name: string | null;
  account_id: string;
  admin: boolean;
  /** The slugs the key may use; null: every served model. */
  models: string[] | null;
  created_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
}

export async function listKeys(db: Kysely<Database>, options: { accountId?: string } = {}): Promise<KeyInfo[]> {
  let q = db
    .selectFrom('api_keys')
    .select(['id', 'prefix', 'name', 'account_id', 'is_admin', 'models', 'created_at', 'revoked_at', 'last_used_at'])
    .orderBy('created_at')
    .orderBy('id');
  if (options.accountId !== undefined) q = q.where('account_id', '=', options.accountId);
  const rows = await q.execute();
  return rows.map((r) => ({
    key_id: r.id,
    prefix: r.prefix,
    name: r.name,
    account_id: r.account_id,
    admin: Boolean(r.is_admin),
    models: keyModels(r.models),
    created_at: Number(r.created_at),
    revoked_at: r.revoked_at === null ? null : Number(r.revoked_at),
    last_used_at: r.last_used_at === null ? null : Number(r.last_used_at),
  }));
}

export type RevokeResult =
  | { status: 'revoked'; key_id: string }
  | { status: 'already_revoked'; key_id: string }
  | { status: 'not_found' }
  | { status: 'ambiguous'; key_ids: string[] };

/**
 * Revokes one key named by its id, its display prefix (with or without the `…`), or the
 * key itself. A prefix is not unique: when it names several live keys nothing is revoked
 * and `ambiguous` lists them. One transaction.
 */
export async function revokeKey(db: Kysely<Database>, ref: string, now = Date.now()): Promise<RevokeResult> {
  const r = ref.trim();
  const bare = r.replace(/(…|\.\.\.)$/, '');
  return db.transaction().execute(async (trx): Promise<RevokeResult> => {
    const matches = await trx
      .selectFrom('api_keys')
      .select(['id', 'revoked_at'])
      .where((eb) => eb.or([eb('id', '=', r), eb('prefix', '=', `${bare}…`), eb('key_hash', '=', hashKey(r))]))
      .orderBy('id')
      .execute();
    if (matches.length === 0) return { status: 'not_found' };
    const live = matches.filter((m) => m.revoked_at === null);
    if (live.length > 1) return { status: 'ambiguous', key_ids: live.map((m) => m.id) };
    const target = live[0];
    if (!target) return { status: 'already_revoked', key_id: matches[0]?.id ?? r };
    await trx.updateTable('api_keys').set({ revoked_at: now }).where('id', '=', target.id).where('revoked_at', 'is', null).execute();
    return { status: 'revoked', key_id: target.id };
  });
}
