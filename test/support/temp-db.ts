/**
 * Test helper: a migrated, empty database of either dialect — SQLite in a fresh temporary
 * data directory, or a fresh database on the test run's PostgreSQL (test/support/services.ts).
 * The suites that touch the store run once per dialect (`DIALECTS`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { openDatabase } from '../../src/store/db.js';
import { migrateToLatest } from '../../src/store/migrations/index.js';
import type { Database } from '../../src/store/schema.js';
import { freshPostgresDatabase } from './services.js';

export type Dialect = 'sqlite' | 'postgres';
export const DIALECTS: readonly Dialect[] = ['sqlite', 'postgres'];

export interface TempDb {
  db: Kysely<Database>;
  dialect: Dialect;
  /** The SQLite data directory (also made for PostgreSQL: outputs and logs go there). */
  dataDir: string;
  /** What another process opens to reach the same database: the data directory or the URL. */
  target: string;
  /** The PostgreSQL URL, or null for SQLite. */
  url: string | null;
  close(): Promise<void>;
}

/** Opens a data directory or a postgres:// URL, as `TempDb.target` names it. */
export function openTarget(target: string): Kysely<Database> {
  return /^postgres(ql)?:\/\//.test(target) ? openDatabase({ dataDir: '', url: target }) : openDatabase({ dataDir: target });
}

export async function tempDb(dialect: Dialect = 'sqlite'): Promise<TempDb> {
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-store-'));
  const pg = dialect === 'postgres' ? await freshPostgresDatabase() : null;
  const target = pg?.url ?? dataDir;
  const db = openTarget(target);
  await migrateToLatest(db);
  return {
    db,
    dialect,
    dataDir,
    target,
    url: pg?.url ?? null,
    async close() {
      await db.destroy();
      await pg?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
