/**
 * The klein family behind one server (contract §6):
 * - `requests.model`: the served model's slug a request runs on; rows written before this
 *   migration ran on the only model there was, `flux-2-klein-4b`. Queues claim by model
 *   (index `requests_model_queue`).
 * - `api_keys.models`: the slugs a key may use, comma-separated; null: every served model
 *   (contract §2: a model outside them is a 403).
 * Portable schema builder only.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('requests').addColumn('model', 'text', (c) => c.notNull().defaultTo('flux-2-klein-4b')).execute();
  await db.schema.createIndex('requests_model_queue').on('requests').columns(['model', 'status', 'created_at']).execute();
  await db.schema.alterTable('api_keys').addColumn('models', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('api_keys').dropColumn('models').execute();
  await db.schema.dropIndex('requests_model_queue').execute();
  await db.schema.alterTable('requests').dropColumn('model').execute();
}
