/** `klein usage [account-id]`: requests by status, credits charged and granted, balance. */
import type { Command } from 'commander';
import { usage } from '../accounts/ledger.js';
import { microToCredits } from '../contract/pricing.js';
import { type CliContext, withDb } from './db-cli.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('usage [account-id]')
    .description('usage of one account, or of every account')
    .option('--since <iso>', 'only since this time (ISO-8601)')
    .option('--json', 'print JSON', false)
    .action(async (accountId: string | undefined, o: { since?: string; json: boolean }) => {
      const sinceMs = o.since ? Date.parse(o.since) : 0;
      if (Number.isNaN(sinceMs)) throw new Error(`--since must be an ISO-8601 time, got "${o.since}"`);
      const rows = await withDb(ctx, async (db) => {
        const ids = accountId ? [accountId] : (await db.selectFrom('accounts').select('id').orderBy('created_at').execute()).map((r) => r.id);
        const exists = accountId ? await db.selectFrom('accounts').select('id').where('id', '=', accountId).executeTakeFirst() : true;
        if (!exists) throw new Error(`no account ${accountId}`);
        return Promise.all(ids.map((id) => usage(db, id, { sinceMs })));
      });
      const out = rows.map((u) => ({
        account_id: u.account_id,
        credits: microToCredits(u.balance_micro),
        charged: microToCredits(u.charged_micro),
        granted: microToCredits(u.granted_micro),
        requests: u.requests,
      }));
      if (o.json) process.stdout.write(`${JSON.stringify(accountId ? out[0] : out)}\n`);
      else for (const u of out) process.stdout.write(`${u.account_id}  credits ${u.credits}  charged ${u.charged}  granted ${u.granted}  requests ${JSON.stringify(u.requests)}\n`);
    });
}
