import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';
import { authenticate, createKey, displayPrefix, generateKey, hashKey, KEY_PREFIX, keyModels, keyModelsProblem, listKeys, revokeKey } from './keys.js';
import { ServedModels, VARIANT_DEFAULTS } from '../contract/models.js';
import { balance } from './ledger.js';

for (const dialect of DIALECTS) {
describe(`keys (${dialect})`, () => {
  let t: TempDb;
  beforeEach(async () => {
    t = await tempDb(dialect);
  });
  afterEach(async () => t.close());

  test('generateKey: the product prefix, 43 base62 characters, never the same twice', () => {
    const keys = Array.from({ length: 200 }, generateKey);
    for (const k of keys) assert.match(k, /^kl_[0-9A-Za-z]{43}$/);
    assert.equal(new Set(keys).size, keys.length);
    // 32 random bytes: every base62 digit shows up across 200 keys (a weak-RNG smoke test).
    assert.equal(new Set(keys.map((k) => k.slice(KEY_PREFIX.length)).join('')).size, 62);
    assert.equal(displayPrefix('kl_Ab12CdEf'), 'kl_Ab12Cd…');
    assert.match(hashKey('x'), /^[0-9a-f]{64}$/);
  });

  test('a created key authenticates to its account; a wrong or altered key does not', async () => {
    const k = await createKey(t.db, { creditsMicro: 3_000_000, rpm: 10, concurrency: 2, name: 'ci', admin: true });
    const a = await authenticate(t.db, k.key);
    assert.ok(a);
    assert.equal(a.account.id, k.account_id);
    assert.equal(a.key.id, k.key_id);
    assert.equal(a.key.is_admin, 1);
    assert.equal(a.account.rpm, 10);
    assert.equal(a.account.concurrency, 2);
    assert.equal(a.account.balance_micro, 3_000_000);
    assert.equal(k.balance_micro, 3_000_000);
    assert.match(k.webhook_secret, /^whsec_[A-Za-z0-9+/]{32}$/);
    const flipped = k.key.slice(0, -1) + (k.key.endsWith('a') ? 'b' : 'a');
    assert.equal(await authenticate(t.db, flipped), null);
    assert.equal(await authenticate(t.db, generateKey()), null);
    assert.equal(await authenticate(t.db, ''), null);
    assert.equal(await authenticate(t.db, 'x'.repeat(10_000)), null);
  });

  test('revoking a key takes effect on the very next authentication, by id, prefix or key', async () => {
    const k1 = await createKey(t.db, {});
    const k2 = await createKey(t.db, { accountId: k1.account_id });
    const k3 = await createKey(t.db, {});
    assert.ok(await authenticate(t.db, k1.key));
    assert.deepEqual(await revokeKey(t.db, k1.key_id), { status: 'revoked', key_id: k1.key_id });
    assert.equal(await authenticate(t.db, k1.key), null);
    // The other key of the same account still works.
    assert.ok(await authenticate(t.db, k2.key));
    assert.deepEqual(await revokeKey(t.db, k2.prefix), { status: 'revoked', key_id: k2.key_id });
    assert.equal(await authenticate(t.db, k2.key), null);
    assert.deepEqual(await revokeKey(t.db, k3.key), { status: 'revoked', key_id: k3.key_id });
    assert.equal(await authenticate(t.db, k3.key), null);
    assert.deepEqual(await revokeKey(t.db, k1.key_id), { status: 'already_revoked', key_id: k1.key_id });
    assert.deepEqual(await revokeKey(t.db, 'key_nope'), { status: 'not_found' });
  });

  test('a prefix that names several live keys revokes none', async () => {
    const a = await createKey(t.db, {});
    const b = await createKey(t.db, {});
    // Give both the same display prefix, as a rare collision would.
    await t.db.updateTable('api_keys').set({ prefix: 'kl_same00…' }).execute();
    const r = await revokeKey(t.db, 'kl_same00');
    assert.equal(r.status, 'ambiguous');
    assert.ok(await authenticate(t.db, a.key));
    assert.ok(await authenticate(t.db, b.key));
  });

  test('only the hash is stored: the raw key appears nowhere in the database', async () => {
    const k = await createKey(t.db, { name: 'secret-test' });
    await authenticate(t.db, k.key);
    const body = k.key.slice(KEY_PREFIX.length);
    // SQLite: the files themselves, WAL included. PostgreSQL: every row of every table.
    const stored: Array<[string, Buffer]> =
      t.dialect === 'sqlite'
        ? readdirSync(t.dataDir).filter((f) => f.startsWith('klein.db')).map((f) => [f, readFileSync(join(t.dataDir, f))])
        : await Promise.all(
            (await t.db.introspection.getTables()).map(async (tb) => [
              tb.name,
              Buffer.from(JSON.stringify(await t.db.selectFrom(tb.name as 'accounts').selectAll().execute())),
            ] as [string, Buffer]),
          );
    assert.ok(stored.some(([where]) => where === (t.dialect === 'sqlite' ? 'klein.db' : 'api_keys')));
    for (const [where, bytes] of stored) {
      assert.equal(bytes.indexOf(body), -1, `key found in ${where}`);
      assert.equal(bytes.indexOf(body.slice(6, 30)), -1, `part of the key found in ${where}`);
    }
    // …while its hash is there, which shows the scan reads what was written.
    assert.notEqual(Buffer.concat(stored.map(([, b]) => b)).indexOf(hashKey(k.key)), -1);
    const row = await t.db.selectFrom('api_keys').selectAll().where('id', '=', k.key_id).executeTakeFirstOrThrow();
    assert.equal(row.key_hash, hashKey(k.key));
    assert.equal(row.prefix, displayPrefix(k.key));
  });

  test('a key for an existing account shares its balance; credits given are added', async () => {
    const first = await createKey(t.db, { creditsMicro: 1_000_000 });
    const second = await createKey(t.db, { accountId: first.account_id, creditsMicro: 500_000, rpm: 60 });
    assert.equal(second.account_id, first.account_id);
    assert.equal(second.webhook_secret, first.webhook_secret);
    assert.equal(second.balance_micro, 1_500_000);
    assert.equal(await balance(t.db, first.account_id), 1_500_000);
    assert.equal((await authenticate(t.db, first.key))?.account.rpm, 60);
    await assert.rejects(createKey(t.db, { accountId: 'acct_nope' }), /no account/);
    await assert.rejects(createKey(t.db, { rpm: 0 }), RangeError);
    // A failed creation leaves nothing behind.
    assert.equal((await listKeys(t.db)).length, 2);
  });

  test('listKeys shows prefixes and state, never keys or hashes; last use is recorded', async () => {
    const k = await createKey(t.db, { name: 'one' }, 1000);
    await authenticate(t.db, k.key, 5000);
    await authenticate(t.db, k.key, 6000); // within a minute: not written again
    await revokeKey(t.db, k.key_id, 9000);
    const [row, ...rest] = await listKeys(t.db);
    assert.equal(rest.length, 0);
    assert.deepEqual(row, {
      key_id: k.key_id,
      prefix: k.prefix,
      name: 'one',
      account_id: k.account_id,
      admin: false,
      models: null,
      created_at: 1000,
      revoked_at: 9000,
      last_used_at: 5000,
    });
    assert.ok(!JSON.stringify(row).includes(k.key.slice(10)));
    assert.deepEqual(await listKeys(t.db, { accountId: 'acct_other' }), []);
  });

  test('a key may be limited to some models: stored, authenticated and listed; absent means every model', async () => {
    const limited = await createKey(t.db, { name: 'nine', models: ['flux-2-klein-9b', 'flux-2-klein-4b', 'flux-2-klein-9b'] }, 1000);
    const every = await createKey(t.db, { models: null }, 2000);
    const unset = await createKey(t.db, {}, 3000);
    // Given twice, kept once, in the order given.
    assert.deepEqual(limited.models, ['flux-2-klein-9b', 'flux-2-klein-4b']);
    assert.equal(every.models, null);
    assert.equal(unset.models, null);
    const row = await t.db.selectFrom('api_keys').select('models').where('id', '=', limited.key_id).executeTakeFirstOrThrow();
    assert.equal(row.models, 'flux-2-klein-9b,flux-2-klein-4b');
    const limitedAuth = await authenticate(t.db, limited.key);
    const unsetAuth = await authenticate(t.db, unset.key);
    assert.ok(limitedAuth && unsetAuth);
    assert.deepEqual(keyModels(limitedAuth.key.models), ['flux-2-klein-9b', 'flux-2-klein-4b']);
    assert.equal(keyModels(unsetAuth.key.models), null);
    assert.deepEqual(
      (await listKeys(t.db)).map((k) => [k.key_id, k.models]),
      [
        [limited.key_id, ['flux-2-klein-9b', 'flux-2-klein-4b']],
        [every.key_id, null],
        [unset.key_id, null],
      ],
    );
  });

  test('a model list that is not all slugs, or is empty, is refused and writes nothing', async () => {
    for (const [models, why] of [
      [[], /models: must name at least one model/],
      [['Flux-2-Klein-4B'], /models: "Flux-2-Klein-4B" is not a model slug/],
      [['flux-2-klein-4b', 'a,b'], /models: "a,b" is not a model slug/],
      [[''], /models: "" is not a model slug/],
      [['-x'], /models: "-x" is not a model slug/],
    ] as const) {
      await assert.rejects(createKey(t.db, { models }), (err: Error) => err instanceof RangeError && why.test(err.message));
    }
    assert.deepEqual(await listKeys(t.db), []);
    assert.equal((await t.db.selectFrom('accounts').select('id').execute()).length, 0);
  });
});
}

describe('keyModelsProblem', () => {
  const served = new ServedModels(
    ['flux-2-klein-4b', 'flux-2-klein-9b'].map((slug) => ({ slug, source: 'tiny', variant: 'distilled' as const, defaults: VARIANT_DEFAULTS.distilled })),
  );

  test('served slugs pass; others are named, with the served ones', () => {
    assert.equal(keyModelsProblem(['flux-2-klein-9b'], served), null);
    assert.equal(keyModelsProblem(['flux-2-klein-4b', 'flux-2-klein-9b'], served), null);
    assert.equal(keyModelsProblem(['flux-1-dev', 'flux-2-klein-4b'], served), '"flux-1-dev" is not a served model (served: flux-2-klein-4b, flux-2-klein-9b)');
    assert.equal(keyModelsProblem(['a', 'b'], served), '"a", "b" are not served models (served: flux-2-klein-4b, flux-2-klein-9b)');
    // Without the served list only the spelling is checked (the accounts layer's own check).
    assert.equal(keyModelsProblem(['flux-1-dev']), null);
    assert.match(String(keyModelsProblem(['x'.repeat(500)], served)), /^"x{100}" is not a model slug/);
  });
});
