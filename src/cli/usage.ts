/** `klein usage [account-id]`: balance, money in and out, and requests by status. */
import type { Command } from 'commander';
import type { Kysely } from 'kysely';
import { listAccounts } from '../accounts/accounts.js';
import { usage } from '../accounts/ledger.js';
import type { Usage } from '../contract/admin-schema.js';
import { microToCredits } from '../billing/pricing.js';
import type { Database } from '../store/schema.js';
import { type CliContext, withDb } from './db-cli.js';
import { type CliIo, stdoutIo } from './keys.js';

export interface UsageOptions {
  accountId?: string;
  /** ISO-8601 time; everything kept when absent. */
  since?: string;
  json?: boolean;
}

function view(u: Usage) {
  return {
    account_id: u.account_id,
    since: new Date(u.since).toISOString(),
    credits: microToCredits(u.balance_micro),
    held: microToCredits(u.held_micro),
    granted: microToCredits(u.granted_micro),
    charged: microToCredits(u.charged_micro),
    refunded: microToCredits(u.refunded_micro),
    settled_requests: u.settled_requests,
    requests: u.requests,
  };
}

/** One account's usage (a JSON object) or every account's (a JSON array); returns what is printed. */
export async function usageReport(db: Kysely<Database>, options: UsageOptions): Promise<string> {
  const since = options.since === undefined ? 0 : Date.parse(options.since);
  if (Number.isNaN(since)) throw new Error(`--since must be an ISO-8601 time, got "${options.since}"`);
  const ids = options.accountId !== undefined ? [options.accountId] : (await listAccounts(db)).map((a) => a.id);
  const rows: ReturnType<typeof view>[] = [];
  for (const id of ids) {
    const u = await usage(db, id, { since });
    if (!u) throw new Error(`no account ${id}`);
    rows.push(view(u));
  }
  if (options.json) return `${JSON.stringify(options.accountId !== undefined ? rows[0] : rows)}\n`;
  if (rows.length === 0) return 'no accounts\n';
  return rows
    .map((u) => {
      const reqs = Object.entries(u.requests).map(([s, n]) => `${s.toLowerCase()} ${n}`).join(', ') || 'none';
      return `${u.account_id}  credits ${u.credits}  held ${u.held}  granted ${u.granted}  charged ${u.charged} (${u.settled_requests} requests)  refunded ${u.refunded}  requests: ${reqs}`;
    })
    .join('\n')
    .concat('\n');
}

export function register(program: Command, ctx: CliContext, io: CliIo = stdoutIo): void {
  program
    .command('usage [account-id]')
    .description('usage of one account, or of every account')
    .option('--since <iso>', 'only since this time (ISO-8601)')
    .option('--json', 'print JSON', false)
    .action(async (accountId: string | undefined, options: { since?: string; json: boolean }) => {
      io.out(await withDb(ctx, (db) => usageReport(db, { accountId, since: options.since, json: options.json })));
    });
}
