/**
 * The initial schema. Written only with Kysely's schema builder and portable types (text,
 * integer, bigint; CHECK constraints; a partial unique index), so the same migration runs
 * on SQLite and on PostgreSQL. Frozen once released: change the schema with a new file.
 */
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('accounts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .addColumn('balance_micro', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('rpm', 'integer')
    .addColumn('concurrency', 'integer')
    .addColumn('webhook_secret', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    // The last line of defence: a bug elsewhere cannot spend money the account lacks.
    .addCheckConstraint('accounts_balance_nonnegative', sql`balance_micro >= 0`)
    .execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id'))
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('is_admin', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .addColumn('last_used_at', 'bigint')
    .execute();
  await db.schema.createIndex('api_keys_account').on('api_keys').column('account_id').execute();
  await db.schema.createIndex('api_keys_prefix').on('api_keys').column('prefix').execute();

  // No foreign key from request_id to requests: the reservation is written before the
  // request row exists, and ledger entries outlive expired requests.
  await db.schema
    .createTable('ledger')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id'))
    .addColumn('request_id', 'text')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('phase', 'text')
    .addColumn('amount_micro', 'bigint', (c) => c.notNull())
    .addColumn('note', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addCheckConstraint('ledger_kind', sql`kind in ('grant', 'reserve', 'settle', 'release')`)
    .addCheckConstraint(
      'ledger_phase',
      sql`(kind = 'grant' and phase is null and request_id is null) or (kind = 'reserve' and phase = 'open' and request_id is not null) or (kind in ('settle', 'release') and phase = 'close' and request_id is not null)`,
    )
    // One reservation per request, and one closing entry (settle XOR release) per request.
    // NULL request ids (grants) never collide, in SQLite and in PostgreSQL alike.
    .addUniqueConstraint('ledger_request_kind', ['request_id', 'kind'])
    .addUniqueConstraint('ledger_request_phase', ['request_id', 'phase'])
    .execute();
  await db.schema.createIndex('ledger_account').on('ledger').columns(['account_id', 'created_at']).execute();

  await db.schema
    .createTable('requests')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id'))
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('route', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('params', 'text', (c) => c.notNull())
    .addColumn('seed', 'bigint', (c) => c.notNull())
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('price_micro', 'bigint', (c) => c.notNull())
    .addColumn('cost_micro', 'bigint')
    .addColumn('error_code', 'text')
    .addColumn('error_message', 'text')
    .addColumn('timings', 'text')
    .addColumn('output_key', 'text')
    .addColumn('output_format', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('worker_id', 'text')
    .addColumn('lease_until', 'bigint')
    .addColumn('idempotency_key', 'text')
    .addColumn('idempotency_hash', 'text')
    .addColumn('webhook_url', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('started_at', 'bigint')
    .addColumn('completed_at', 'bigint')
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addCheckConstraint('requests_status', sql`status in ('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED')`)
    .execute();
  // The queue: oldest QUEUED first (claimNext, queuePosition, countByStatus).
  await db.schema.createIndex('requests_queue').on('requests').columns(['status', 'created_at']).execute();
  await db.schema.createIndex('requests_account').on('requests').columns(['account_id', 'created_at']).execute();
  await db.schema.createIndex('requests_expiry').on('requests').column('expires_at').execute();
  await db.schema
    .createIndex('requests_idempotency')
    .on('requests')
    .columns(['account_id', 'idempotency_key'])
    .unique()
    .where(sql.ref('idempotency_key'), 'is not', null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['requests', 'ledger', 'api_keys', 'accounts']) await db.schema.dropTable(t).execute();
}
