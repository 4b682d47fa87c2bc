/** Opens the embedded database: SQLite in `<dataDir>/klein.db`, WAL, foreign keys on. */
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { Database } from './schema.js';

export function openDatabase(opts: { dataDir: string; file?: string }): Kysely<Database> {
  const sqlite = new SQLite(join(opts.dataDir, opts.file ?? 'klein.db'));
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('synchronous = NORMAL');
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
}
