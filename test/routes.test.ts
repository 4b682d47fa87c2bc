/**
 * Route tests through inject() (no socket) on the real app, the real SQLite store and a
 * real engine process — the simulated engine (`KLEIN_MODEL=simulated`), which speaks the
 * protocol exactly and starts in a moment. Every status code of contract §2 is produced.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.js';
import { buildServer, type BuiltServer } from '../src/compose/server.js';
import { createKey, revokeKey } from '../src/accounts/keys.js';
import Compile from 'typebox/compile';
import type { TSchema } from 'typebox';
import { COMPONENTS } from '../src/gateway/openapi.js';
import { awayFromMinuteEdge } from './support/minute-window.js';
import { until } from './support/until.js';

interface Ctx {
  s: BuiltServer;
  dir: string;
}

async function build(extra: Record<string, string> = {}, start = true): Promise<Ctx> {
  const dir = mkdtempSync(join(tmpdir(), 'klein-routes-'));
  const env = { ...process.env, KLEIN_DATA_DIR: dir, KLEIN_MODEL: 'simulated', KLEIN_LOG_LEVEL: 'silent', KLEIN_ENGINE_FAULTS: '1', ...extra };
  const s = await buildServer(loadConfig(env), env);
  if (start) await s.start();
  return { s, dir };
}

async function ready(s: BuiltServer, want = 'READY'): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const h = (await s.app.inject({ method: 'GET', url: '/health' })).json() as { status: string };
    if (h.status === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never ${want}`);
}

async function close(c: Ctx): Promise<void> {
  await c.s.close();
  rmSync(c.dir, { recursive: true, force: true });
}

const SMALL = { prompt: 'a cat', width: 64, height: 64, steps: 1, cfg: 1 };

function post(s: BuiltServer, key: string | null, body: unknown, headers: Record<string, string> = {}) {
  return s.app.inject({
    method: 'POST',
    url: '/v1/flux-2-klein-4b',
    headers: { 'content-type': 'application/json', ...(key ? { 'x-api-key': key } : {}), ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

function codeOf(r: { json: () => unknown }): string {
  return (r.json() as { code: string }).code;
}

describe('routes on a ready server', () => {
  let c: Ctx;
  let key: string;
  let admin: string;
  before(async () => {
    c = await build({ KLEIN_BODY_LIMIT: '200000' });
    await ready(c.s);
    key = (await createKey(c.s.db, { creditsMicro: 100_000_000, rpm: 1000, concurrency: 10 })).key;
    admin = (await createKey(c.s.db, { creditsMicro: 0, admin: true })).key;
  });
  after(() => close(c));

  it('200 with the image and every header', async () => {
    const r = await post(c.s, key, SMALL);
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'image/png');
    for (const h of ['x-request-id', 'x-seed-value', 'x-generation-time', 'x-cost', 'x-remaining-credits', 'x-rate-limit-remaining', 'x-rate-limit-reset-at-utc']) {
      assert.ok(r.headers[h] !== undefined, h);
    }
  });

  it('400 for invalid JSON, wrong content type, and each bad field, with details', async () => {
    const bad = await post(c.s, key, '{"prompt": ');
    assert.equal(bad.statusCode, 400);
    assert.equal(codeOf(bad), 'invalid_json');
    const ct = await c.s.app.inject({ method: 'POST', url: '/v1/flux-2-klein-4b', headers: { 'x-api-key': key, 'content-type': 'text/plain' }, payload: 'hi' });
    assert.equal(ct.statusCode, 400);
    assert.equal(codeOf(ct), 'unsupported_media_type');
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ prompt: '' }, 'prompt'],
      [{ prompt: 'x', steps: '20' }, 'steps'],
      [{ prompt: 'x', steps: 101 }, 'steps'],
      [{ prompt: 'x', cfg: 21 }, 'cfg'],
      [{ prompt: 'x', sampler: 'ddim' }, 'sampler'],
      [{ prompt: 'x', seed: 1.5 }, 'seed'],
      [{ prompt: 'x', quality: 9 }, 'quality'],
      [{ prompt: 'x', aspect_ratio: '7:3' }, 'aspect_ratio'],
      [{ prompt: 'x', aspect_ratio: 'match_input_image' }, 'aspect_ratio'],
      [{ prompt: 'x', image_format: 'gif' }, 'image_format'],
      [{ prompt: 'x', go_fast: 'yes' }, 'go_fast'],
      [{ prompt: 'x', width: 512 }, 'height'],
      [{ prompt: 'x', width: 2064, height: 512 }, 'width'],
      [{ prompt: 'x', image_urls: ['ftp://x'] }, 'image_urls[0]'],
      [{ prompt: 'x', image_urls: ['a', 'b', 'c', 'd', 'e'] }, 'image_urls'],
      [{ prompt: 'x', unknown_field: 1 }, 'unknown_field'],
      [{ prompt: 'x', webhook_url: 'https://example.com' }, 'webhook_url'],
    ];
    for (const [body, field] of cases) {
      const r = await post(c.s, key, body);
      assert.equal(r.statusCode, 400, JSON.stringify(body));
      const j = r.json() as { code: string; details: Array<{ field: string }>; request_id: string; error: string };
      assert.equal(j.code, 'validation_failed');
      assert.ok(j.details.some((d) => d.field === field), `${JSON.stringify(body)} → ${JSON.stringify(j.details)}`);
      assert.equal(j.request_id, r.headers['x-request-id']);
    }
  });

  it('400 for an image that cannot be fetched, decoded, or is blocked', async () => {
    const blocked = await post(c.s, key, { ...SMALL, image_urls: ['http://127.0.0.1:9/x.png'] });
    assert.equal(blocked.statusCode, 400);
    assert.equal(codeOf(blocked), 'url_blocked');
    const junk = await post(c.s, key, { ...SMALL, image_urls: [`data:image/png;base64,${Buffer.from('not an image').toString('base64')}`] });
    assert.equal(junk.statusCode, 400);
    assert.equal(codeOf(junk), 'image_invalid');
  });

  it('401 for a missing, unknown or revoked key, before the body is read', async () => {
    assert.equal((await post(c.s, null, SMALL)).statusCode, 401);
    const unknown = await post(c.s, 'kl_nope', SMALL);
    assert.equal(unknown.statusCode, 401);
    assert.ok(!unknown.body.includes('kl_nope'), 'the key is never echoed');
    assert.equal((await post(c.s, null, '{not json')).statusCode, 401);
    const k = await createKey(c.s.db, { creditsMicro: 1_000_000 });
    assert.equal((await post(c.s, k.key, SMALL)).statusCode, 200);
    await revokeKey(c.s.db, k.key_id);
    assert.equal((await post(c.s, k.key, SMALL)).statusCode, 401);
  });

  it('403 for admin routes without an admin key; 200 with one', async () => {
    assert.equal((await c.s.app.inject({ method: 'GET', url: '/admin/accounts', headers: { 'x-api-key': key } })).statusCode, 403);
    const r = await c.s.app.inject({ method: 'GET', url: '/admin/accounts', headers: { 'x-api-key': admin } });
    assert.equal(r.statusCode, 200);
    assert.ok((r.json() as { accounts: unknown[] }).accounts.length >= 2);
  });

  it('400 naming the query parameter or header its schema refuses', async () => {
    const sub = await c.s.app.inject({ method: 'POST', url: '/v2/flux-2-klein-4b', headers: { 'x-api-key': key, 'content-type': 'application/json' }, payload: JSON.stringify(SMALL) });
    const id = (sub.json() as { request_id: string }).request_id;
    const r = await c.s.app.inject({ method: 'GET', url: `/v2/requests/${id}?base64=maybe`, headers: { 'x-api-key': key } });
    assert.equal(r.statusCode, 400);
    assert.deepEqual((r.json() as { details: unknown }).details, [{ field: 'base64', message: 'must be true or false, got "maybe"' }]);
    for (const value of ['true', '1']) {
      const ok = await c.s.app.inject({ method: 'GET', url: `/v2/requests/${id}?base64=${value}`, headers: { 'x-api-key': key } });
      assert.equal(ok.statusCode, 200, value);
    }
    const long = await post(c.s, key, SMALL, { 'idempotency-key': 'k'.repeat(256) });
    assert.equal(long.statusCode, 400);
    assert.deepEqual((long.json() as { details: unknown }).details, [{ field: 'idempotency-key', message: 'must be at most 255 characters, got 256' }]);
  });

  it('answers JSON exactly as the published schemas say', async () => {
    const conforms = (name: string, body: unknown) => {
      const check = Compile(COMPONENTS.get(name) as TSchema);
      assert.ok(check.Check(body), `${name}: ${JSON.stringify(check.Errors(body)).slice(0, 500)} in ${JSON.stringify(body).slice(0, 300)}`);
    };
    const headers = { 'x-api-key': key, 'content-type': 'application/json' };
    const sub = await c.s.app.inject({ method: 'POST', url: '/v2/flux-2-klein-4b', headers, payload: JSON.stringify(SMALL) });
    conforms('Submitted', sub.json());
    const id = (sub.json() as { request_id: string }).request_id;
    conforms('Status', (await c.s.app.inject({ method: 'GET', url: `/v2/requests/${id}/status`, headers })).json());
    for (let i = 0; i < 100 && (await c.s.app.inject({ method: 'GET', url: `/v2/requests/${id}/status`, headers })).json().status !== 'COMPLETED'; i++) await new Promise((r) => setTimeout(r, 50));
    const record = (await c.s.app.inject({ method: 'GET', url: `/v2/requests/${id}`, headers })).json() as { metrics: Record<string, unknown> };
    conforms('RequestRecord', record);
    assert.equal(typeof record.metrics.remaining_credits, 'number', 'the record carries the balance');
    conforms('Cancellation', (await c.s.app.inject({ method: 'POST', url: `/v2/requests/${id}/cancel`, headers: { 'x-api-key': key } })).json());
    conforms('GeneratedImage', (await post(c.s, key, { ...SMALL, base64: true })).json());
    conforms('Credits', (await c.s.app.inject({ method: 'GET', url: '/v1/get-user-credits', headers })).json());
    conforms('Health', (await c.s.app.inject({ method: 'GET', url: '/health' })).json());
    conforms('ReadyCheck', (await c.s.app.inject({ method: 'GET', url: '/health/ready' })).json());
    const images = await c.s.app.inject({ method: 'POST', url: '/v1/images/generations', headers, payload: JSON.stringify({ prompt: 'x', size: '64x64', steps: 1, n: 2 }) });
    conforms('OpenAiImagesResponse', images.json());
    conforms('Error', (await post(c.s, key, { prompt: 'x', steps: 0 })).json());
    const adminHeaders = { 'x-api-key': admin };
    conforms('AccountList', (await c.s.app.inject({ method: 'GET', url: '/admin/accounts', headers: adminHeaders })).json());
    const account = (await c.s.app.inject({ method: 'GET', url: '/v1/get-user-credits', headers })).json().account_id as string;
    conforms('Usage', (await c.s.app.inject({ method: 'GET', url: `/admin/accounts/${account}/usage`, headers: adminHeaders })).json());
    const grant = await c.s.app.inject({ method: 'POST', url: `/admin/accounts/${account}/credits`, headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: '{"credits":"0.5"}' });
    conforms('CreditBalance', grant.json());
  });

  it('404 for an unknown model, route or account', async () => {
    const m = await c.s.app.inject({ method: 'POST', url: '/v1/flux-1-dev', headers: { 'x-api-key': key, 'content-type': 'application/json' }, payload: '{}' });
    assert.equal(m.statusCode, 404);
    assert.equal(codeOf(m), 'not_found');
    assert.equal((await c.s.app.inject({ method: 'GET', url: '/nope' })).statusCode, 404);
    assert.equal((await c.s.app.inject({ method: 'GET', url: '/admin/accounts/acct_x/usage', headers: { 'x-api-key': admin } })).statusCode, 404);
  });

  it('406 when the balance is below the price, saying both', async () => {
    const poor = await createKey(c.s.db, { creditsMicro: 10 });
    const r = await post(c.s, poor.key, SMALL);
    assert.equal(r.statusCode, 406);
    assert.match((r.json() as { error: string }).error, /costs [\d.]+ credits and the balance is 0\.00001/);
  });

  it('413 for a body over the limit', async () => {
    const r = await post(c.s, key, { prompt: 'x'.repeat(300_000) });
    assert.equal(r.statusCode, 413);
    assert.equal(codeOf(r), 'payload_too_large');
  });

  it('429 over the per-minute limit and over the concurrency limit', async () => {
    await awayFromMinuteEdge();
    const k = await createKey(c.s.db, { creditsMicro: 100_000_000, rpm: 2, concurrency: 5 });
    assert.equal((await post(c.s, k.key, SMALL)).statusCode, 200);
    assert.equal((await post(c.s, k.key, SMALL)).statusCode, 200);
    const r = await post(c.s, k.key, SMALL);
    assert.equal(r.statusCode, 429);
    assert.equal(codeOf(r), 'rate_limited');
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.ok(r.headers['x-rate-limit-reset-at-utc']);
    // The slow call holds the key's one slot from admission until its answer: the next call
    // is sent once the slow one's row exists (it was admitted), not after a guessed delay.
    const k2 = await createKey(c.s.db, { creditsMicro: 100_000_000, rpm: 100, concurrency: 1 });
    const slow2 = post(c.s, k2.key, { ...SMALL, prompt: 'x [[fault:sleep:1000]]', steps: 2 });
    const admitted = () => c.s.db.selectFrom('requests').select('id').where('key_id', '=', k2.key_id).executeTakeFirst();
    await until('the slow call is admitted', async () => (await admitted()) !== undefined, 4000, 10);
    const r2 = await post(c.s, k2.key, SMALL);
    assert.equal(r2.statusCode, 429);
    assert.equal(codeOf(r2), 'concurrency_limited');
    assert.equal((await slow2).statusCode, 200);
  });

  it('502 when the engine crashes mid-request, not charged; then it serves again', async () => {
    const k = await createKey(c.s.db, { creditsMicro: 5_000_000 });
    const r = await post(c.s, k.key, { ...SMALL, prompt: 'x [[fault:crash]]' });
    assert.equal(r.statusCode, 502);
    assert.equal(codeOf(r), 'engine_failed');
    const credits = await c.s.app.inject({ method: 'GET', url: '/v1/get-user-credits', headers: { 'x-api-key': k.key } });
    assert.equal((credits.json() as { credits: number }).credits, 5);
    await ready(c.s);
    assert.equal((await post(c.s, k.key, SMALL)).statusCode, 200);
  });

  it('502 for out of memory, and the engine keeps serving', async () => {
    const r = await post(c.s, key, { ...SMALL, prompt: 'x [[fault:oom]]' });
    assert.equal(r.statusCode, 502);
    assert.equal(codeOf(r), 'out_of_memory');
    assert.equal((await post(c.s, key, SMALL)).statusCode, 200);
  });
});

describe('routes while the engine is not serving', () => {
  it('503 with Retry-After while the engine starts', async () => {
    const c = await build({ KLEIN_ENGINE_FAULT_LOAD_DELAY_MS: '4000' });
    try {
      const k = await createKey(c.s.db, { creditsMicro: 1_000_000 });
      const r = await post(c.s, k.key, SMALL);
      assert.equal(r.statusCode, 503);
      assert.equal(codeOf(r), 'not_ready');
      assert.ok(Number(r.headers['retry-after']) >= 1);
      const h = (await c.s.app.inject({ method: 'GET', url: '/health' })).json() as { status: string };
      assert.equal(h.status, 'STARTING');
    } finally {
      await close(c);
    }
  });

  it('502 with the reason when the model cannot load; /health says UNHEALTHY and why', async () => {
    const c = await build({ KLEIN_MODEL: '/nonexistent/model-dir' });
    try {
      await ready(c.s, 'UNHEALTHY');
      const h = (await c.s.app.inject({ method: 'GET', url: '/health' })).json() as { status: string; reason: string };
      assert.match(h.reason, /does not exist/);
      const k = await createKey(c.s.db, { creditsMicro: 1_000_000 });
      const r = await post(c.s, k.key, SMALL);
      assert.equal(r.statusCode, 502);
      assert.equal(codeOf(r), 'engine_unavailable');
      assert.match((r.json() as { error: string }).error, /does not exist/);
    } finally {
      await close(c);
    }
  });

  it('504 when the sync timeout passes; the job is cancelled and not charged', async () => {
    const c = await build({ KLEIN_SYNC_TIMEOUT: '1' });
    try {
      await ready(c.s);
      const k = await createKey(c.s.db, { creditsMicro: 5_000_000 });
      const r = await post(c.s, k.key, { ...SMALL, prompt: 'x [[fault:sleep:600]]', steps: 4 });
      assert.equal(r.statusCode, 504);
      assert.equal(codeOf(r), 'timeout');
      const credits = await c.s.app.inject({ method: 'GET', url: '/v1/get-user-credits', headers: { 'x-api-key': k.key } });
      assert.equal((credits.json() as { credits: number }).credits, 5);
    } finally {
      await close(c);
    }
  });

  it('500 for a bug (here: the database is gone), with the request id and no stack trace', async () => {
    const c = await build();
    try {
      await ready(c.s);
      const k = await createKey(c.s.db, { creditsMicro: 1_000_000 });
      await c.s.db.destroy();
      const r = await post(c.s, k.key, SMALL);
      assert.equal(r.statusCode, 500);
      const j = r.json() as { code: string; error: string; request_id: string };
      assert.equal(j.code, 'internal');
      assert.equal(j.request_id, r.headers['x-request-id']);
      assert.ok(!/at .*\.ts:\d+/.test(r.body), 'no stack trace');
    } finally {
      await c.s.close().catch(() => undefined);
      rmSync(c.dir, { recursive: true, force: true });
    }
  });
});
