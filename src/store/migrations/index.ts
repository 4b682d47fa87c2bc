/** Migrations in code (no files read at run time), applied in name order. */
import { type Kysely, type Migration, type MigrationProvider, Migrator } from 'kysely';
import * as m001 from './001-initial.js';

const MIGRATIONS: Record<string, Migration> = {
  '001-initial': m001,
};

class InCodeProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new InCodeProvider() });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
