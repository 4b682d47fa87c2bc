/**
 * `klein keys create|list|revoke`. `create` prints only the new key on stdout (or, with
 * --json, one JSON object); the key is shown this once and stored only as a hash.
 */
import type { Command } from 'commander';
import { createKey, listKeys, revokeKey } from '../accounts/keys.js';
import { creditsToMicro, microToCredits } from '../contract/pricing.js';
import { type CliContext, positiveInt, withDb } from './db-cli.js';

export function register(program: Command, ctx: CliContext): void {
  const keys = program.command('keys').description('create, list and revoke API keys');

  keys
    .command('create')
    .description('create an API key (and a new account unless --account is given); prints only the key')
    .option('--credits <n>', 'credits to grant (decimal)', '0')
    .option('--rpm <n>', 'requests per minute for this account', positiveInt('--rpm'))
    .option('--concurrency <n>', 'concurrent requests for this account', positiveInt('--concurrency'))
    .option('--name <s>', 'a name to recognise the key by')
    .option('--admin', 'the key may use the admin routes', false)
    .option('--account <id>', 'add the key to an existing account')
    .option('--json', 'print a JSON object instead of only the key', false)
    .action(async (o: { credits: string; rpm?: number; concurrency?: number; name?: string; admin: boolean; account?: string; json: boolean }) => {
      const micro = creditsToMicro(o.credits);
      if (micro === null) throw new Error(`--credits must be a non-negative decimal with at most 6 places, got "${o.credits}"`);
      const k = await withDb(ctx, (db) =>
        createKey(db, { accountId: o.account, creditsMicro: micro, rpm: o.rpm, concurrency: o.concurrency, name: o.name ?? null, admin: o.admin }),
      );
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({
            key: k.key,
            account_id: k.account_id,
            key_id: k.key_id,
            prefix: k.prefix,
            name: k.name,
            credits: Number(microToCredits(micro)),
            rpm: o.rpm ?? null,
            concurrency: o.concurrency ?? null,
            admin: k.admin,
            webhook_secret: k.webhook_secret,
          })}\n`,
        );
      } else {
        process.stdout.write(`${k.key}\n`);
      }
    });

  keys
    .command('list')
    .description('list keys (prefixes only; keys themselves are never stored)')
    .option('--json', 'print JSON', false)
    .action(async (o: { json: boolean }) => {
      const rows = await withDb(ctx, (db) => listKeys(db));
      const out = rows.map((r) => ({
        key_id: r.key_id,
        prefix: r.prefix,
        name: r.name,
        admin: Boolean(r.is_admin),
        account_id: r.account_id,
        credits: microToCredits(Number(r.balance_micro)),
        rpm: r.rpm,
        concurrency: r.concurrency,
        created_at: new Date(Number(r.created_at)).toISOString(),
        revoked: r.revoked_at !== null,
      }));
      if (o.json) process.stdout.write(`${JSON.stringify(out)}\n`);
      else for (const r of out) process.stdout.write(`${r.key_id}  ${r.prefix}  ${r.revoked ? 'REVOKED' : 'active '}  ${r.admin ? 'admin' : '     '}  account ${r.account_id}  credits ${r.credits}  ${r.name ?? ''}\n`);
    });

  keys
    .command('revoke <key-id-or-prefix>')
    .description('revoke a key; it fails from the next request on')
    .action(async (id: string) => {
      const n = await withDb(ctx, (db) => revokeKey(db, id));
      if (n === 0) throw new Error(`no active key matches "${id}"`);
      process.stdout.write(`revoked ${n} key${n === 1 ? '' : 's'}\n`);
    });
}
