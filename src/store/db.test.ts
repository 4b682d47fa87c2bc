import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import { DB_FILE, openDatabase } from './db.js';
import { migrateToLatest } from './migrations/index.js';
import { tempDb } from '../../test/support/temp-db.js';

test('openDatabase creates <dataDir>/klein.db with WAL, foreign keys and a busy timeout', async () => {
  const root = mkdtempSync(join(tmpdir(), 'klein-db-'));
  const dataDir = join(root, 'nested', 'data');
  const db = openDatabase({ dataDir, busyTimeoutMs: 1234 });
  try {
    await migrateToLatest(db);
    assert.ok(existsSync(join(dataDir, DB_FILE)));
    const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(db);
    assert.equal(mode.rows[0]?.journal_mode, 'wal');
    const fk = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(db);
    assert.equal(fk.rows[0]?.foreign_keys, 1);
    const bt = await sql<{ timeout: number }>`pragma busy_timeout`.execute(db);
    assert.equal(bt.rows[0]?.timeout, 1234);
    // Foreign keys are enforced: a key for a missing account is refused.
    await assert.rejects(
      db
        .insertInto('api_keys')
        .values({ id: 'k', account_id: 'nope', key_hash: 'h', prefix: 'p', name: null, created_at: 0, revoked_at: null, last_used_at: null })
        .execute(),
      /FOREIGN KEY/,
    );
  } finally {
    await db.destroy();
    rmSync(root, { recursive: true, force: true });
  }
});

test('migrations run once: a second run, and a run after reopening, apply nothing and keep data', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-db-'));
  try {
    const db1 = openDatabase({ dataDir });
    assert.deepEqual(await migrateToLatest(db1), ['001-initial', '002-webhooks', '003-held-charges', '004-models']);
    assert.deepEqual(await migrateToLatest(db1), []);
    await db1
      .insertInto('accounts')
      .values({ id: 'a1', name: null, balance_micro: 5, rpm: null, concurrency: null, webhook_secret: 's', created_at: 1 })
      .execute();
    await db1.destroy();

    const db2 = openDatabase({ dataDir });
    assert.deepEqual(await migrateToLatest(db2), []);
    const tables = (await db2.introspection.getTables()).map((t) => t.name).sort();
    assert.deepEqual(tables, ['accounts', 'api_keys', 'ledger', 'requests', 'webhook_attempts', 'webhook_deliveries']);
    const row = await db2.selectFrom('accounts').select('balance_micro').where('id', '=', 'a1').executeTakeFirstOrThrow();
    assert.equal(row.balance_micro, 5);
    await db2.destroy();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('the schema refuses a negative balance and an unknown status (CHECK constraints)', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-db-'));
  const db = openDatabase({ dataDir });
  try {
    await migrateToLatest(db);
    await assert.rejects(
      db.insertInto('accounts').values({ id: 'a', name: null, balance_micro: -1, rpm: null, concurrency: null, webhook_secret: 's', created_at: 0 }).execute(),
      /CHECK/,
    );
    await db.insertInto('accounts').values({ id: 'a', name: null, balance_micro: 0, rpm: null, concurrency: null, webhook_secret: 's', created_at: 0 }).execute();
    await assert.rejects(insertBadStatus(db), /CHECK/);
  } finally {
    await db.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('PostgreSQL: the same migrations run once, and the schema enforces the same constraints', async () => {
  const t = await tempDb('postgres');
  try {
    // tempDb migrated it already: another run applies nothing, also on a new connection pool.
    assert.deepEqual(await migrateToLatest(t.db), []);
    const again = openDatabase({ dataDir: '', url: t.url });
    assert.deepEqual(await migrateToLatest(again), []);
    await again.destroy();
    const tables = (await t.db.introspection.getTables()).map((x) => x.name).sort();
    assert.deepEqual(tables, ['accounts', 'api_keys', 'ledger', 'requests', 'webhook_attempts', 'webhook_deliveries']);
    await assert.rejects(
      t.db.insertInto('accounts').values({ id: 'a', name: null, balance_micro: -1, rpm: null, concurrency: null, webhook_secret: 's', created_at: 0 }).execute(),
      /accounts_balance_nonnegative/,
    );
    await t.db.insertInto('accounts').values({ id: 'a', name: null, balance_micro: 2 ** 53 - 1, rpm: null, concurrency: null, webhook_secret: 's', created_at: 0 }).execute();
    // bigint columns read back as exact JS numbers, not strings.
    const row = await t.db.selectFrom('accounts').select('balance_micro').where('id', '=', 'a').executeTakeFirstOrThrow();
    assert.strictEqual(row.balance_micro, 2 ** 53 - 1);
    await assert.rejects(
      t.db
        .insertInto('api_keys')
        .values({ id: 'k', account_id: 'nope', key_hash: 'h', prefix: 'p', name: null, created_at: 0, revoked_at: null, last_used_at: null })
        .execute(),
      /foreign key/,
    );
    await assert.rejects(insertBadStatus(t.db), /requests_status/);
  } finally {
    await t.close();
  }
});

/** A request row whose status is not one of the five: the schema must refuse it. */
function insertBadStatus(db: Kysely<Database>) {
  return (
    db
      .insertInto('requests')
      // @ts-expect-error: deliberately not a RequestStatus
      .values({ id: 'r', account_id: 'a', key_id: 'k', route: 'x', status: 'RUNNING', params: '{}', seed: 0, width: 64, height: 64, price_micro: 0, attempts: 0, created_at: 0, expires_at: 1 })
      .execute()
  );
}
