/**
 * The `klein` command: `serve` runs the server; `keys`, `credits` and `usage` manage
 * accounts in the data directory (KLEIN_DATA_DIR, default ./data).
 */
import { Command } from 'commander';
import { ConfigError } from '../config.js';
import { registerServe } from './serve.js';
import { register as registerKeys } from './keys.js';
import { register as registerCredits } from './credits.js';
import { register as registerUsage } from './usage.js';
import { register as registerWebhooks } from './webhooks.js';
import { register as registerGenerate } from './generate.js';

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
