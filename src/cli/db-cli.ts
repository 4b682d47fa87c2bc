/**
 * Opens (and migrates) the server's database for a CLI command, then closes it: PostgreSQL
 * when DATABASE_URL is set (the scale-out store), else SQLite in the data directory.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Kysely } from 'kysely';
import { openDatabase } from '../store/db.js';
import { migrateToLatest } from '../store/migrations/index.js';
import type { Database } from '../store/schema.js';

export interface CliContext {
  dataDir: () => string;
  /** A postgres:// URL, or null for the data directory's SQLite file. */
  databaseUrl: () => string | null;
}

export async function withDb<T>(ctx: CliContext, fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  const dir = resolve(ctx.dataDir());
  mkdirSync(dir, { recursive: true });
  const db = openDatabase({ dataDir: dir, url: ctx.databaseUrl() });
  try {
    await migrateToLatest(db);
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

export function positiveInt(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${name} must be a positive integer, got "${v}"`);
    return Number(v);
  };
}
