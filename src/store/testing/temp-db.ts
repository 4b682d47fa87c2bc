/** Test helper: a migrated SQLite database in a fresh temporary data directory. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { openDatabase } from '../db.js';
import { migrateToLatest } from '../migrations/index.js';
import type { Database } from '../schema.js';

export interface TempDb {
  db: Kysely<Database>;
  dataDir: string;
  close(): Promise<void>;
}

export async function tempDb(): Promise<TempDb> {
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-store-'));
  const db = openDatabase({ dataDir });
  await migrateToLatest(db);
  return {
    db,
    dataDir,
    async close() {
      await db.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
