/** `klein credits add <account-id> <credits>`: grants credits, given as an exact decimal. */
import type { Command } from 'commander';
import type { Kysely } from 'kysely';
import { grant } from '../accounts/ledger.js';
import { microToCredits } from '../billing/pricing.js';
import type { Database } from '../store/schema.js';
import { type CliContext, withDb } from './db-cli.js';
import { type CliIo, parseCreditsOption, stdoutIo } from './keys.js';

/** Adds the credits (one ledger grant); returns what the command prints: the new balance. */
export async function creditsAdd(db: Kysely<Database>, accountId: string, credits: string): Promise<string> {
  const micro = parseCreditsOption('credits', credits, { positive: true });
  const after = await grant(db, accountId, micro, 'cli: credits add');
  return `${accountId}: ${microToCredits(after)} credits\n`;
}

export function register(program: Command, ctx: CliContext, io: CliIo = stdoutIo): void {
  program
    .command('credits')
    .description('manage credits')
    .command('add <account-id> <credits>')
    .description('grant credits to an account (decimal, at most 6 places)')
    .action(async (accountId: string, credits: string) => {
      parseCreditsOption('credits', credits, { positive: true });
      io.out(await withDb(ctx, (db) => creditsAdd(db, accountId, credits)));
    });
}
