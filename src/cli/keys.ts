/**
 * `klein keys create|list|revoke`. `create` prints only the new key on stdout (or, with
 * --json, one JSON object), so `KEY=$(klein keys create --credits 10)` works; the key is
 * shown this once and stored only as a hash. `list` never shows keys, only prefixes.
 * Credits are decimal strings converted to micro-credits exactly (no float rounding).
 * `--models a,b` limits the key to those served models (KLEIN_MODELS, read as `serve` reads
 * it); without it the key may use every model.
 */
import type { Command } from 'commander';
import type { Kysely } from 'kysely';
import { createKey, keyModelsProblem, listKeys, revokeKey } from '../accounts/keys.js';
import { creditsToMicro, microToCredits } from '../billing/pricing.js';
import { loadConfig } from '../config.js';
import type { ServedModels } from '../contract/models.js';
import type { Database } from '../store/schema.js';
import { type CliContext, positiveInt, withDb } from './db-cli.js';

/** Where a command's stdout goes (tests capture it). */
export interface CliIo {
  out: (text: string) => void;
}

export const stdoutIo: CliIo = { out: (t) => void process.stdout.write(t) };

/** Exact decimal credits → micro-credits, or an error that says what is wrong. */
export function parseCreditsOption(flag: string, text: string, opts: { positive?: boolean } = {}): number {
  const micro = creditsToMicro(text);
  if (micro === null || !Number.isSafeInteger(micro) || (opts.positive && micro <= 0)) {
    throw new Error(`${flag} must be a ${opts.positive ? 'positive' : 'non-negative'} decimal number of credits with at most 6 decimal places, got "${text}"`);
  }
  return micro;
}

export interface KeysCreateOptions {
  credits?: string;
  rpm?: number;
  concurrency?: number;
  name?: string;
  admin?: boolean;
  account?: string;
  /** Comma-separated slugs of served models. */
  models?: string;
  json?: boolean;
}

/** `--models a,b` → its slugs, each a served model, or an error that names the served ones. */
export function parseModelsOption(text: string, served: ServedModels): string[] {
  const models = text.trim() === '' ? [] : text.split(',').map((m) => m.trim());
  const problem = keyModelsProblem(models, served);
  if (problem !== null) throw new Error(`--models: ${problem}`);
  return models;
}

/** Creates the key (limited to `models`, already checked; null: every model); returns exactly what `keys create` prints. */
export async function keysCreate(db: Kysely<Database>, options: Omit<KeysCreateOptions, 'models'>, models: readonly string[] | null = null): Promise<string> {
  const micro = parseCreditsOption('--credits', options.credits ?? '0');
  const k = await createKey(db, {
    accountId: options.account,
    creditsMicro: micro,
    rpm: options.rpm,
    concurrency: options.concurrency,
    name: options.name ?? null,
    admin: Boolean(options.admin),
    models,
  });
  if (!options.json) return `${k.key}\n`;
  return `${JSON.stringify({
    key: k.key,
    account_id: k.account_id,
    key_id: k.key_id,
    prefix: k.prefix,
    name: k.name,
    credits: Number(microToCredits(k.balance_micro)),
    rpm: k.rpm,
    concurrency: k.concurrency,
    admin: k.admin,
    models: k.models,
    webhook_secret: k.webhook_secret,
  })}\n`;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Every key (or one account's), prefixes only. */
export async function keysList(db: Kysely<Database>, options: { json?: boolean; account?: string }): Promise<string> {
  const keys = await listKeys(db, { accountId: options.account });
  const rows = keys.map((k) => ({
    key_id: k.key_id,
    prefix: k.prefix,
    name: k.name,
    account_id: k.account_id,
    admin: k.admin,
    models: k.models,
    status: k.revoked_at === null ? 'active' : 'revoked',
    created_at: iso(k.created_at),
    revoked_at: iso(k.revoked_at),
    last_used_at: iso(k.last_used_at),
  }));
  if (options.json) return `${JSON.stringify(rows)}\n`;
  if (rows.length === 0) return 'no keys\n';
  return rows
    .map((r) => `${r.key_id}  ${r.prefix}  ${r.status.padEnd(7)}  ${r.admin ? 'admin' : '     '}  ${r.account_id}  models ${r.models?.join(',') ?? 'all'}  used ${r.last_used_at ?? 'never'}  ${r.name ?? ''}`.trimEnd())
    .join('\n')
    .concat('\n');
}

/** Revokes one key by id, display prefix or the key itself; throws when that names none or several. */
export async function keysRevoke(db: Kysely<Database>, ref: string): Promise<string> {
  const r = await revokeKey(db, ref);
  switch (r.status) {
    case 'revoked':
      return `revoked ${r.key_id}\n`;
    case 'already_revoked':
      return `${r.key_id} was already revoked\n`;
    case 'not_found':
      throw new Error(`no key matches "${ref}" (give a key id, a prefix like kl_Ab12Cd, or the key)`);
    case 'ambiguous':
      throw new Error(`"${ref}" matches ${r.key_ids.length} active keys (${r.key_ids.join(', ')}); give the key id`);
  }
}

/** The served models as `klein serve` would read them from the environment (KLEIN_MODELS). */
const servedFromEnv = (): ServedModels => loadConfig(process.env).models;

export function register(program: Command, ctx: CliContext, io: CliIo = stdoutIo, served: () => ServedModels = servedFromEnv): void {
  const keys = program.command('keys').description('create, list and revoke API keys');

  keys
    .command('create')
    .description('create an API key (and a new account unless --account is given); prints only the key')
    .option('--credits <n>', 'credits: a new account starts with them; an existing one gets them added (decimal)', '0')
    .option('--rpm <n>', "the account's requests per minute", positiveInt('--rpm'))
    .option('--concurrency <n>', "the account's concurrent requests", positiveInt('--concurrency'))
    .option('--name <s>', 'a name to recognise the key (and a new account) by')
    .option('--admin', 'the key may use the admin routes', false)
    .option('--account <id>', 'add the key to this existing account')
    .option('--models <slugs>', 'the served models the key may use, comma-separated (default: every model)')
    .option('--json', 'print a JSON object instead of only the key', false)
    .action(async (options: KeysCreateOptions) => {
      // Parse before opening the database, so a typo changes nothing.
      parseCreditsOption('--credits', options.credits ?? '0');
      const models = options.models === undefined ? null : parseModelsOption(options.models, served());
      io.out(await withDb(ctx, (db) => keysCreate(db, options, models)));
    });

  keys
    .command('list')
    .description('list keys (prefixes only: keys themselves are never stored)')
    .option('--account <id>', "only this account's keys")
    .option('--json', 'print JSON', false)
    .action(async (options: { json: boolean; account?: string }) => {
      io.out(await withDb(ctx, (db) => keysList(db, options)));
    });

  keys
    .command('revoke <key-id-or-prefix>')
    .description('revoke a key; it is refused from the next request on')
    .action(async (ref: string) => {
      io.out(await withDb(ctx, (db) => keysRevoke(db, ref)));
    });
}
