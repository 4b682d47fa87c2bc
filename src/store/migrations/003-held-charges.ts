/**
 * `requests.hold_until`: a synchronous request's charge is held until its answer is
 * delivered (contract §1: only a 200 is charged). Null for requests charged when they
 * complete (asynchronous ones, and synchronous ones sent with an Idempotency-Key, whose
 * retry must find them charged). Portable schema builder only.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('requests').addColumn('hold_until', 'bigint').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('requests').dropColumn('hold_until').execute();
}
