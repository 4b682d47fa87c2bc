/**
 * The `klein` command: `serve` runs the server (or, scaled out, a gateway), `worker` runs
 * engines for a fleet, `migrate` prepares the database; `keys`, `credits`, `usage` and
 * `webhooks` manage accounts in the server's database (DATABASE_URL, or SQLite in
 * KLEIN_DATA_DIR, default ./data); `generate` calls a running server.
 */
import { Command } from 'commander';
import { ConfigError } from '../config.js';
import { registerServe } from './serve.js';
import { register as registerKeys } from './keys.js';
import { register as registerCredits } from './credits.js';
import { register as registerUsage } from './usage.js';
import { register as registerWebhooks } from './webhooks.js';
import { register as registerGenerate } from './generate.js';
import { register as registerMigrate } from './migrate.js';

export function buildProgram(): Command {
  const program = new Command('klein')
    .description('klein-serve: a self-hosted, Segmind-compatible API for FLUX.2 [klein] 4B')
    .showHelpAfterError();
  const ctx = { dataDir: () => process.env.KLEIN_DATA_DIR || './data', databaseUrl: () => process.env.DATABASE_URL || null };
  registerServe(program);
  registerKeys(program, ctx);
  registerCredits(program, ctx);
  registerUsage(program, ctx);
  registerWebhooks(program, ctx);
  registerGenerate(program);
  registerMigrate(program, ctx);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`klein: ${err.message}`);
    process.exit(78);
  }
  console.error(`klein: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
