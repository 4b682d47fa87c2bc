/** `klein credits add <account-id> <credits>`: grants credits (exact decimal). */
import type { Command } from 'commander';
import { balance, grant } from '../accounts/ledger.js';
import { creditsToMicro, microToCredits } from '../contract/pricing.js';
import { type CliContext, withDb } from './db-cli.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('credits')
    .description('manage credits')
    .command('add <account-id> <credits>')
    .description('grant credits to an account')
    .action(async (accountId: string, credits: string) => {
      const micro = creditsToMicro(credits);
      if (micro === null || micro <= 0) throw new Error(`credits must be a positive decimal with at most 6 places, got "${credits}"`);
      const after = await withDb(ctx, async (db) => {
        await grant(db, accountId, micro, 'cli');
        return balance(db, accountId);
      });
      process.stdout.write(`${accountId}: ${microToCredits(after)} credits\n`);
    });
}
