import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { authenticate } from '../accounts/keys.js';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';
import { runKlein } from '../../test/support/cli.js';
import { register } from './keys.js';
import { ServedModels, VARIANT_DEFAULTS } from '../contract/models.js';

/** Two served models, as KLEIN_MODELS=flux-2-klein-4b=…,flux-2-klein-9b=… gives them. */
const SERVED = new ServedModels(
  ['flux-2-klein-4b', 'flux-2-klein-9b'].map((slug) => ({ slug, source: 'tiny', variant: 'distilled' as const, defaults: VARIANT_DEFAULTS.distilled })),
);

for (const dialect of DIALECTS) {
describe(`klein keys (${dialect})`, () => {
  let t: TempDb;
  beforeEach(async () => {
    t = await tempDb(dialect);
  });
  afterEach(async () => t.close());

  /** Runs `klein keys …` in-process; returns what it printed. */
  const klein = (...args: string[]) => runKlein(t, [(program, ctx, io) => register(program, ctx, io, () => SERVED)], args);

  const withDb = <T>(fn: (db: TempDb['db']) => Promise<T>): Promise<T> => fn(t.db);

  test('keys create prints only the key, and the key works', async () => {
    const out = await klein('keys', 'create', '--credits', '10');
    assert.match(out, /^kl_[0-9A-Za-z]{43}\n$/);
    const auth = await withDb((db) => authenticate(db, out.trim()));
    assert.equal(auth?.account.balance_micro, 10_000_000);
    assert.equal(auth?.account.rpm, null);
    assert.equal(auth?.key.is_admin, 0);
  });

  test('keys create --json has the documented shape, with exact decimal credits', async () => {
    const out = await klein('keys', 'create', '--credits', '1.005', '--rpm', '30', '--concurrency', '2', '--name', 'ci', '--admin', '--json');
    assert.ok(out.endsWith('\n') && !out.trim().includes('\n'), 'one line of JSON');
    const j = JSON.parse(out) as Record<string, unknown>;
    assert.deepEqual(Object.keys(j).sort(), ['account_id', 'admin', 'concurrency', 'credits', 'key', 'key_id', 'models', 'name', 'prefix', 'rpm', 'webhook_secret'].sort());
    assert.match(String(j.key), /^kl_[0-9A-Za-z]{43}$/);
    assert.equal(j.prefix, `${String(j.key).slice(0, 9)}…`);
    assert.equal(j.credits, 1.005);
    assert.equal(j.rpm, 30);
    assert.equal(j.concurrency, 2);
    assert.equal(j.admin, true);
    assert.equal(j.name, 'ci');
    assert.equal(j.models, null, 'without --models: every model');
    assert.match(String(j.webhook_secret), /^whsec_/);
    // 1.005 credits is 1,005,000 micro exactly (a float would give 1004999.9999999999).
    const auth = await withDb((db) => authenticate(db, String(j.key)));
    assert.equal(auth?.account.balance_micro, 1_005_000);
    assert.equal(auth?.account.id, j.account_id);
    assert.equal(auth?.key.id, j.key_id);
    assert.equal(auth?.key.is_admin, 1);
  });

  test('keys create --account adds a key to an existing account and its credits to the balance', async () => {
    const first = JSON.parse(await klein('keys', 'create', '--credits', '2', '--json')) as { account_id: string };
    const second = JSON.parse(await klein('keys', 'create', '--account', first.account_id, '--credits', '0.5', '--json')) as { account_id: string; credits: number };
    assert.equal(second.account_id, first.account_id);
    assert.equal(second.credits, 2.5);
    await assert.rejects(klein('keys', 'create', '--account', 'acct_nope'), /no account acct_nope/);
  });

  test('keys create refuses inexact or invalid numbers before touching the database', async () => {
    await assert.rejects(klein('keys', 'create', '--credits', '0.0000001'), /--credits/);
    await assert.rejects(klein('keys', 'create', '--credits', '-1'), /--credits/);
    await assert.rejects(klein('keys', 'create', '--credits', '1e3'), /--credits/);
    await assert.rejects(klein('keys', 'create', '--rpm', '0'), /--rpm/);
    await assert.rejects(klein('keys', 'create', '--concurrency', '1.5'), /--concurrency/);
    assert.equal(await klein('keys', 'list'), 'no keys\n');
  });

  test('keys list shows prefixes, never keys; keys revoke takes effect at once', async () => {
    const a = JSON.parse(await klein('keys', 'create', '--name', 'alpha', '--json')) as { key: string; key_id: string; prefix: string };
    const b = JSON.parse(await klein('keys', 'create', '--json')) as { key: string; key_id: string; prefix: string };
    const text = await klein('keys', 'list');
    assert.ok(text.includes(a.prefix) && text.includes(b.prefix) && text.includes('alpha'));
    assert.ok(!text.includes(a.key.slice(9)) && !text.includes(b.key.slice(9)));
    const list = JSON.parse(await klein('keys', 'list', '--json')) as Array<Record<string, unknown>>;
    assert.deepEqual(list.map((k) => k.key_id), [a.key_id, b.key_id]);
    assert.ok(list.every((k) => k.status === 'active' && !('key' in k) && !('key_hash' in k)));

    assert.equal(await klein('keys', 'revoke', a.prefix), `revoked ${a.key_id}\n`);
    assert.equal(await withDb((db) => authenticate(db, a.key)), null);
    assert.ok(await withDb((db) => authenticate(db, b.key)));
    assert.equal(await klein('keys', 'revoke', b.key_id), `revoked ${b.key_id}\n`);
    assert.equal(await withDb((db) => authenticate(db, b.key)), null);
    await assert.rejects(klein('keys', 'revoke', 'kl_nothing'), /no key matches/);
    const after = JSON.parse(await klein('keys', 'list', '--json')) as Array<Record<string, unknown>>;
    assert.ok(after.every((k) => k.status === 'revoked' && typeof k.revoked_at === 'string'));
  });

  test('keys create --models limits the key to served models; list shows each key\'s models', async () => {
    const nine = JSON.parse(await klein('keys', 'create', '--models', 'flux-2-klein-9b', '--name', 'nine', '--json')) as { key: string; key_id: string; models: unknown };
    assert.deepEqual(nine.models, ['flux-2-klein-9b']);
    const auth = await withDb((db) => authenticate(db, nine.key));
    assert.equal(auth?.key.models, 'flux-2-klein-9b');
    const both = (await klein('keys', 'create', '--models', 'flux-2-klein-4b, flux-2-klein-9b')).trim();
    assert.equal((await withDb((db) => authenticate(db, both)))?.key.models, 'flux-2-klein-4b,flux-2-klein-9b');
    const every = JSON.parse(await klein('keys', 'create', '--json')) as { key_id: string };

    const list = JSON.parse(await klein('keys', 'list', '--json')) as Array<{ key_id: string; models: unknown }>;
    assert.deepEqual(
      list.map((k) => k.models),
      [['flux-2-klein-9b'], ['flux-2-klein-4b', 'flux-2-klein-9b'], null],
    );
    assert.equal(list[2]?.key_id, every.key_id);
    const lines = (await klein('keys', 'list')).trimEnd().split('\n');
    assert.match(lines[0] ?? '', new RegExp(`^${nine.key_id} .* models flux-2-klein-9b  used \\S+  nine$`));
    assert.match(lines[1] ?? '', / models flux-2-klein-4b,flux-2-klein-9b  used /);
    assert.match(lines[2] ?? '', / models all  used /);
  });

  test('keys create --models refuses a model not served, or not a slug, naming the served ones, before writing', async () => {
    await assert.rejects(klein('keys', 'create', '--models', 'flux-1-dev'), /--models: "flux-1-dev" is not a served model \(served: flux-2-klein-4b, flux-2-klein-9b\)/);
    await assert.rejects(klein('keys', 'create', '--models', 'flux-2-klein-4b,FLUX'), /--models: "FLUX" is not a model slug/);
    await assert.rejects(klein('keys', 'create', '--models', 'flux-2-klein-4b,'), /--models: "" is not a model slug/);
    await assert.rejects(klein('keys', 'create', '--models', ' '), /--models: must name at least one model/);
    assert.equal(await klein('keys', 'list'), 'no keys\n');
  });

  test('the real klein command reads the served models from KLEIN_MODELS', () => {
    const main = fileURLToPath(new URL('./main.ts', import.meta.url));
    const env = { ...process.env, KLEIN_DATA_DIR: t.dataDir, DATABASE_URL: t.url ?? '', KLEIN_MODELS: 'flux-2-klein-4b=tiny,flux-2-klein-9b=tiny-9b' };
    const ok = spawnSync(process.execPath, ['--import', 'tsx', main, 'keys', 'create', '--models', 'flux-2-klein-9b', '--json'], { env, encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.deepEqual((JSON.parse(ok.stdout) as { models: unknown }).models, ['flux-2-klein-9b']);
    const refused = spawnSync(process.execPath, ['--import', 'tsx', main, 'keys', 'create', '--models', 'flux-2-klein-9b-base'], { env, encoding: 'utf8' });
    assert.equal(refused.status, 1);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /--models: "flux-2-klein-9b-base" is not a served model \(served: flux-2-klein-4b, flux-2-klein-9b\)/);
  });

  test('the real klein command prints only the key on stdout', () => {
    const main = fileURLToPath(new URL('./main.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'keys', 'create', '--credits', '3'], {
      env: { ...process.env, KLEIN_DATA_DIR: t.dataDir, DATABASE_URL: t.url ?? '' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^kl_[0-9A-Za-z]{43}\n$/);
  });
});
}
