/**
 * POST and GET /admin/keys through inject() on the real app and its SQLite store, serving
 * two models (no engine runs: these routes never reach one): keys limited to some served
 * models (contract §2), refused with a 400 naming `models` and the served ones otherwise.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.js';
import { buildServer, type BuiltServer } from '../src/compose/server.js';
import { authenticate, createKey } from '../src/accounts/keys.js';
import { balance } from '../src/accounts/ledger.js';

type Json = Record<string, any>;

describe('admin key routes', () => {
  let dir: string;
  let s: BuiltServer;
  let admin: string;
  let user: string;
  const post = (key: string, body: unknown) =>
    s.app.inject({ method: 'POST', url: '/admin/keys', headers: { 'x-api-key': key, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  const list = (key: string, query = '') => s.app.inject({ method: 'GET', url: `/admin/keys${query}`, headers: { 'x-api-key': key } });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'klein-admin-keys-'));
    const env = { ...process.env, KLEIN_DATA_DIR: dir, KLEIN_MODELS: 'flux-2-klein-4b=tiny,flux-2-klein-9b=tiny-9b', KLEIN_LOG_LEVEL: 'silent' };
    s = await buildServer(loadConfig(env), env);
    await s.app.ready();
    admin = (await createKey(s.db, { admin: true, name: 'root' })).key;
    user = (await createKey(s.db, {})).key;
  });
  after(async () => {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a key limited to served models; the key authenticates with that list', async () => {
    const r = await post(admin, { name: 'nine', credits: '2.5', rpm: 30, models: ['flux-2-klein-9b'] });
    assert.equal(r.statusCode, 201, r.body);
    const j = r.json() as Json;
    assert.deepEqual(Object.keys(j).sort(), ['account_id', 'admin', 'concurrency', 'credits', 'key', 'key_id', 'models', 'name', 'prefix', 'rpm', 'webhook_secret']);
    assert.deepEqual(j.models, ['flux-2-klein-9b']);
    assert.equal(j.credits, '2.5');
    assert.equal(j.rpm, 30);
    assert.equal(j.admin, false);
    assert.match(j.key, /^kl_[0-9A-Za-z]{43}$/);
    const auth = await authenticate(s.db, j.key);
    assert.equal(auth?.key.models, 'flux-2-klein-9b');
    assert.equal(auth?.key.id, j.key_id);
    assert.equal(await balance(s.db, j.account_id), 2_500_000);
  });

  it('without models (or with null) the key may use every model; account_id adds it to an account', async () => {
    const first = (await post(admin, {})).json() as Json;
    assert.equal(first.models, null);
    assert.equal(first.credits, '0');
    const second = await post(admin, { account_id: first.account_id, credits: 1, models: null, admin: true });
    assert.equal(second.statusCode, 201, second.body);
    assert.equal(second.json().account_id, first.account_id);
    assert.equal(second.json().models, null);
    assert.equal(second.json().admin, true);
    assert.equal(second.json().credits, '1');
    assert.equal((await authenticate(s.db, second.json().key))?.key.models, null);
  });

  it('400 naming models, and the served ones, for a model not served or not a slug; nothing is created', async () => {
    const before = ((await list(admin)).json() as Json).keys.length;
    const cases: Array<[unknown, RegExp]> = [
      [['flux-1-dev'], /^"flux-1-dev" is not a served model \(served: flux-2-klein-4b, flux-2-klein-9b\)$/],
      [['flux-2-klein-4b', 'flux-2-klein-9b-base'], /^"flux-2-klein-9b-base" is not a served model \(served: flux-2-klein-4b, flux-2-klein-9b\)$/],
      [['Flux'], /^"Flux" is not a model slug/],
      [[], /./],
      ['flux-2-klein-4b', /./],
    ];
    for (const [models, message] of cases) {
      const r = await post(admin, { models });
      assert.equal(r.statusCode, 400, JSON.stringify(models));
      const j = r.json() as Json;
      assert.equal(j.code, 'validation_failed');
      const detail = (j.details as Array<{ field: string; message: string }>).find((d) => d.field === 'models');
      assert.ok(detail, `${JSON.stringify(models)} → ${JSON.stringify(j.details)}`);
      assert.match(detail.message, message);
    }
    const other = await post(admin, { credits: '0.0000001' });
    assert.equal(other.statusCode, 400);
    assert.equal((other.json() as Json).details[0].field, 'credits');
    assert.equal((await post(admin, { nope: 1 })).statusCode, 400);
    const missing = await post(admin, { account_id: 'acct_nope' });
    assert.equal(missing.statusCode, 404);
    assert.equal(((await list(admin)).json() as Json).keys.length, before);
  });

  it("lists every key (or one account's) with its models and state, never the key", async () => {
    const made = (await post(admin, { models: ['flux-2-klein-4b', 'flux-2-klein-9b'], name: 'both' })).json() as Json;
    const r = await list(admin);
    assert.equal(r.statusCode, 200);
    const keys = (r.json() as Json).keys as Json[];
    const row = keys.find((k) => k.key_id === made.key_id);
    assert.deepEqual(row, {
      key_id: made.key_id,
      prefix: made.prefix,
      name: 'both',
      account_id: made.account_id,
      admin: false,
      models: ['flux-2-klein-4b', 'flux-2-klein-9b'],
      status: 'active',
      created_at: row?.created_at,
      revoked_at: null,
      last_used_at: null,
    });
    assert.ok(keys.some((k) => k.models === null));
    assert.ok(!r.body.includes(made.key.slice(10)), 'the key is never listed');
    const mine = (await list(admin, `?account_id=${made.account_id}`)).json() as Json;
    assert.deepEqual(mine.keys.map((k: Json) => k.key_id), [made.key_id]);
  });

  it('403 for a key that is not an admin key', async () => {
    assert.equal((await post(user, { models: ['flux-2-klein-4b'] })).statusCode, 403);
    assert.equal((await list(user)).statusCode, 403);
  });
});
