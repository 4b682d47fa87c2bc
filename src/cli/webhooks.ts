/** `klein webhooks rotate-secret <account-id>`: replaces the account's signing secret. */
import type { Command } from 'commander';
import { newWebhookSecret } from '../accounts/accounts.js';
import { type CliContext, withDb } from './db-cli.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('webhooks')
    .description('webhook settings')
    .command('rotate-secret <account-id>')
    .description('replace the account\'s webhook signing secret; prints the new one (deliveries from now on use it)')
    .option('--json', 'print JSON', false)
    .action(async (accountId: string, options: { json: boolean }) => {
      const secret = newWebhookSecret();
      const n = await withDb(ctx, async (db) => {
        const r = await db.updateTable('accounts').set({ webhook_secret: secret }).where('id', '=', accountId).executeTakeFirst();
        return Number(r.numUpdatedRows);
      });
      if (n === 0) throw new Error(`no account ${accountId}`);
      process.stdout.write(options.json ? `${JSON.stringify({ account_id: accountId, webhook_secret: secret })}\n` : `${secret}\n`);
    });
}
