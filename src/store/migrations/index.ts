/**
 * Migrations live in code (an in-code provider: nothing is read from disk at run time, so
 * the compiled build and tsx behave the same), applied in name order by Kysely's Migrator,
 * which records them in `kysely_migration` and takes its own lock, so running it at every
 * start, or from the CLI while the server runs, is safe.
 */
import { type Kysely, type Migration, type MigrationProvider, Migrator } from 'kysely';
import * as m001 from './001-initial.js';
import * as m002 from './002-webhooks.js';
import * as m003 from './003-held-charges.js';
import * as m004 from './004-models.js';

const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '001-initial': m001,
  '002-webhooks': m002,
  '003-held-charges': m003,
  '004-models': m004,
};

class InCodeProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return { ...MIGRATIONS };
  }
}

/** Applies every pending migration; returns the names applied by this call (often none). */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new InCodeProvider() });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error) {
    const where = failed ? ` (migration ${failed.migrationName})` : '';
    throw new Error(`database migration failed${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
