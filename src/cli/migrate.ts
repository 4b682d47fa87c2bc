/**
 * `klein migrate`: applies the pending migrations to the configured database
 * (DATABASE_URL, or SQLite in the data directory) and prints the ones it applied. Servers
 * and workers also migrate at start; a deployment runs this once before rolling out.
 */
import type { Command } from 'commander';
import { openDatabase } from '../store/db.js';
import { migrateToLatest } from '../store/migrations/index.js';
import type { CliContext } from './db-cli.js';
import { stdoutIo, type CliIo } from './keys.js';

export function register(program: Command, ctx: CliContext, io: CliIo = stdoutIo): void {
  program
    .command('migrate')
    .description('apply pending database migrations (DATABASE_URL, or the data directory\'s SQLite)')
    .action(async () => {
      const db = openDatabase({ dataDir: ctx.dataDir(), url: ctx.databaseUrl() });
      try {
        const applied = await migrateToLatest(db);
        io.out(applied.length > 0 ? `applied ${applied.join(', ')}\n` : 'up to date\n');
      } finally {
        await db.destroy();
      }
    });
}
