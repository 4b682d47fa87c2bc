/**
 * Nothing is charged that was not delivered, and refusals come before expensive work
 * (contract §1, §2, §8), tried over real HTTP against the real server (embedded queue, the
 * simulated engine with its fault markers) as a hostile or unlucky client would:
 *
 * - a sync client gone while its references are fetched, or while it runs: not charged;
 * - with an Idempotency-Key the call survives its client, and the retry gets the image,
 *   charged once; replays of cancelled and failed requests answer their own status and code;
 * - an OpenAI call of n images is all or nothing, and a 200 lists every image's id;
 * - no credits, no slot, the rate limit or no admin right is refused before references are
 *   fetched and before a large body is read (v1, v2 and the OpenAI routes, their form included).
 *
 * After every case the ledger invariant holds (test/support/ledger-invariant.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import sharp from 'sharp';
import { openDatabase } from '../../src/store/db.js';
import type { Database } from '../../src/store/schema.js';
import { ledgerProblems } from '../support/ledger-invariant.js';
import { awayFromMinuteEdge } from '../support/minute-window.js';
import { until } from '../support/until.js';
import { TERMINAL } from '../../src/contract/request-states.js';
import { startTestServer, type TestServer } from './harness.js';
import { imageServer, rawExchange, type ImageServer } from './net-helpers.js';

const SMALL = { width: 64, height: 64, steps: 3, cfg: 1 } as const;
/** The price of SMALL in micro-credits: 1000 + ceil(760 × 4096 × 3 / 10^6). */
const SMALL_PRICE = 1010;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Env {
  s: TestServer;
  db: Kysely<Database>;
  /** The reference-image server (with `hold`, it answers only when released). */
  img: ImageServer;
}

/** The suite's server (simulated engine with fault markers, loopback references allowed), its database and an image server. */
function serverForSuite(o: { hold: boolean }): Env {
  const e = {} as Env;
  before(async () => {
    e.s = await startTestServer({ KLEIN_MODEL: 'simulated:5', KLEIN_ENGINE_FAULTS: '1', KLEIN_ALLOW_NETWORKS: '127.0.0.0/8' });
    e.db = openDatabase({ dataDir: e.s.dataDir });
    e.img = await imageServer({ hold: o.hold });
  });
  after(async () => {
    await e.img?.close();
    await e.db?.destroy();
    await e.s?.close();
  });
  return e;
}

async function settle(e: Env): Promise<void> {
  // Every request ended, and every held answer decided (charged or released).
  for (let i = 0; i < 300; i++) {
    const open = await e.db.selectFrom('requests').select('id').where('status', 'not in', [...TERMINAL]).execute();
    if (open.length === 0 && (await ledgerProblems(e.db)).length === 0) return;
    await sleep(50);
  }
}

async function assertExact(e: Env): Promise<void> {
  await settle(e);
  assert.deepEqual(await ledgerProblems(e.db), []);
}

async function balance(e: Env, accountId: string): Promise<number> {
  return Number((await e.db.selectFrom('accounts').select('balance_micro').where('id', '=', accountId).executeTakeFirstOrThrow()).balance_micro);
}

async function rowsOf(e: Env, accountId: string) {
  return e.db.selectFrom('requests').selectAll().where('account_id', '=', accountId).orderBy('created_at').execute();
}

function v1(e: Env, key: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(`${e.s.url}/v1/flux-2-klein-4b`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, ...headers },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

function openai(e: Env, key: string, body: unknown) {
  return fetch(`${e.s.url}/v1/images/generations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
}

async function envelope(r: Response): Promise<{ error: string; code: string; request_id: string }> {
  const j = (await r.json()) as { error: string; code: string; request_id: string };
  assert.equal(typeof j.error, 'string');
  assert.equal(j.request_id, r.headers.get('x-request-id'), 'the body names the request of the header');
  return j;
}

describe('only a delivered answer is charged', () => {
  const e = serverForSuite({ hold: true });

  it('a sync client gone while its reference is fetched: the request never runs and costs nothing', async () => {
    const k = e.s.createKey({ credits: '1' });
    const before0 = await balance(e, k.account_id);
    const ac = new AbortController();
    const call = v1(e, k.key, { prompt: 'gone while fetching', ...SMALL, image_urls: [e.img.url('slow')] }, {}, ac.signal).catch(() => null);
    await until('the reference is being fetched', async () => e.img.hits.length > 0);
    ac.abort();
    await call;
    await sleep(300);
    e.img.release();
    await sleep(500);
    await assertExact(e);
    const rows = await rowsOf(e, k.account_id);
    assert.ok(rows.every((r) => r.status === 'CANCELLED'), `nothing ran: ${JSON.stringify(rows.map((r) => r.status))}`);
    assert.equal(await balance(e, k.account_id), before0);
  });

  it('a sync client gone while its request runs: cancelled and released', async () => {
    const k = e.s.createKey({ credits: '1' });
    const ac = new AbortController();
    const call = v1(e, k.key, { prompt: '[[fault:sleep:100]] gone while running', ...SMALL, steps: 20 }, {}, ac.signal).catch(() => null);
    await until('it runs', async () => (await rowsOf(e, k.account_id)).some((r) => r.status === 'PROCESSING'));
    ac.abort();
    await call;
    await until('it is cancelled', async () => (await rowsOf(e, k.account_id)).every((r) => r.status === 'CANCELLED'));
    await assertExact(e);
    assert.equal(await balance(e, k.account_id), 1_000_000);
  });

  it('with an Idempotency-Key the call survives its client, and the retry gets the image, charged once', async () => {
    const k = e.s.createKey({ credits: '1' });
    const body = { prompt: '[[fault:sleep:60]] keep running', ...SMALL, steps: 10 };
    const h = { 'idempotency-key': 'survives-1' };
    const ac = new AbortController();
    const first = v1(e, k.key, body, h, ac.signal).catch(() => null);
    await until('it runs', async () => (await rowsOf(e, k.account_id)).some((r) => r.status === 'PROCESSING'));
    ac.abort();
    await first;
    const retry = await v1(e, k.key, body, h);
    assert.equal(retry.status, 200, await retry.clone().text());
    assert.equal(retry.headers.get('content-type'), 'image/png');
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    const rows = await rowsOf(e, k.account_id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.status, 'COMPLETED');
    assert.equal(retry.headers.get('x-request-id'), rows[0]!.id);
    await assertExact(e);
    assert.equal(await balance(e, k.account_id), 1_000_000 - Number(rows[0]!.price_micro));
    const kinds = (await e.db.selectFrom('ledger').select('kind').where('request_id', '=', rows[0]!.id).execute()).map((x) => x.kind).sort();
    assert.deepEqual(kinds, ['reserve', 'settle']);
  });

  it('replays of a cancelled and of a failed request answer their own status and code, with their own id', async () => {
    const k = e.s.createKey({ credits: '1' });
    const cancelledBody = { prompt: '[[fault:sleep:100]] to be cancelled', ...SMALL, steps: 20 };
    const call = v1(e, k.key, cancelledBody, { 'idempotency-key': 'cancel-me' });
    await until('it runs', async () => (await rowsOf(e, k.account_id)).some((r) => r.status === 'PROCESSING'));
    const id = (await rowsOf(e, k.account_id))[0]!.id;
    const c = await fetch(`${e.s.url}/v2/requests/${id}/cancel`, { method: 'POST', headers: { 'x-api-key': k.key } });
    assert.equal(c.status, 200);
    const original = await call;
    assert.equal(original.status, 409);
    assert.equal((await envelope(original)).code, 'request_cancelled');
    const replay = await v1(e, k.key, cancelledBody, { 'idempotency-key': 'cancel-me' });
    assert.equal(replay.status, 409);
    const rj = await envelope(replay);
    assert.equal(rj.code, 'request_cancelled');
    assert.equal(rj.request_id, id);

    const failedBody = { prompt: '[[fault:internal]] fails', ...SMALL };
    const f1 = await v1(e, k.key, failedBody, { 'idempotency-key': 'fail-me' });
    assert.equal(f1.status, 502);
    const f1j = await envelope(f1);
    const f2 = await v1(e, k.key, failedBody, { 'idempotency-key': 'fail-me' });
    assert.equal(f2.status, 502);
    const f2j = await envelope(f2);
    assert.equal(f2j.code, f1j.code);
    assert.equal(f2j.request_id, f1j.request_id);
    await assertExact(e);
    assert.equal(await balance(e, k.account_id), 1_000_000);
  });

  it('OpenAI n > 1: a 200 lists every image\'s request id, each charged once', async () => {
    const k = e.s.createKey({ credits: '1' });
    const r = await openai(e, k.key, { prompt: 'two', n: 2, size: '64x64', steps: 3, cfg: 1 });
    assert.equal(r.status, 200, await r.clone().text());
    const j = (await r.json()) as { data: Array<{ b64_json: string; request_id: string }> };
    assert.equal(j.data.length, 2);
    const ids = j.data.map((d) => d.request_id);
    assert.equal(new Set(ids).size, 2);
    await assertExact(e);
    const rows = await rowsOf(e, k.account_id);
    assert.deepEqual(rows.map((x) => x.id).sort(), [...ids].sort());
    assert.ok(rows.every((x) => x.status === 'COMPLETED' && Number(x.cost_micro) === SMALL_PRICE));
    assert.equal(await balance(e, k.account_id), 1_000_000 - 2 * SMALL_PRICE);
  });

  it('OpenAI n > 1: a 406 for one image charges none, finished images included', async () => {
    // Each image decodes a large uploaded reference at admission (~0.1 s), so the first
    // images have finished when the fourth is refused: enough credits for three and a half.
    const big = await sharp({ create: { width: 2200, height: 2200, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).png({ compressionLevel: 1 }).toBuffer();
    const price = 1000 + Math.ceil((760 * (64 * 64 + 1024 * 1024) * 3) / 1e6);
    const k = e.s.createKey({ credits: (3.5 * price / 1e6).toFixed(6) });
    const start = await balance(e, k.account_id);
    const fd = new FormData();
    for (const [f, v] of Object.entries({ prompt: 'four', n: '4', size: '64x64', steps: '3', cfg: '1' })) fd.append(f, v);
    fd.append('image', new Blob([new Uint8Array(big)], { type: 'image/png' }), 'big.png');
    const r = await fetch(`${e.s.url}/v1/images/edits`, { method: 'POST', headers: { authorization: `Bearer ${k.key}` }, body: fd });
    assert.equal(r.status, 406, await r.clone().text());
    await assertExact(e);
    assert.ok((await rowsOf(e, k.account_id)).some((x) => x.status === 'COMPLETED'), 'an image had finished before the refusal');
    assert.equal(await balance(e, k.account_id), start);
    assert.equal((await e.db.selectFrom('ledger').select('id').where('account_id', '=', k.account_id).where('kind', '=', 'settle').execute()).length, 0);
  });

  it('OpenAI n > 1: one image cancelled fails the call, and the images that finished are not charged', async () => {
    const k = e.s.createKey({ credits: '1' });
    const call = openai(e, k.key, { prompt: '[[fault:sleep:40]] three', n: 3, size: '64x64', steps: 10, cfg: 1 });
    await until('the first image completes', async () => (await rowsOf(e, k.account_id)).some((x) => x.status === 'COMPLETED'));
    const queued = (await rowsOf(e, k.account_id)).find((x) => x.status !== 'COMPLETED');
    assert.ok(queued, 'an image is still to run');
    await fetch(`${e.s.url}/v2/requests/${queued.id}/cancel`, { method: 'POST', headers: { 'x-api-key': k.key } });
    const r = await call;
    assert.equal(r.status, 409);
    await assertExact(e);
    assert.equal(await balance(e, k.account_id), 1_000_000);
    const done = (await rowsOf(e, k.account_id)).filter((x) => x.status === 'COMPLETED');
    assert.ok(done.length >= 1);
    for (const d of done) {
      assert.equal(d.error_code, 'undelivered');
      assert.equal(Number(d.cost_micro), 0);
      assert.equal(d.output_key, null, 'an undelivered output is not kept');
    }
  });
});

describe('cheap refusals before expensive work', () => {
  const e = serverForSuite({ hold: false });

  const four = () => [0, 1, 2, 3].map((i) => e.img.url(`ref-${i}-${Math.random()}`));

  it('no credits: 406 before any reference is fetched', async () => {
    const k = e.s.createKey({ credits: '0' });
    const hits = e.img.hits.length;
    const r = await v1(e, k.key, { prompt: 'broke', ...SMALL, image_urls: four() });
    assert.equal(r.status, 406);
    assert.equal((await envelope(r)).code, 'insufficient_credits');
    assert.equal(e.img.hits.length, hits, 'no reference fetched');
  });

  it('credits below the price without references: 406 before any reference is fetched', async () => {
    const k = e.s.createKey({ credits: '0.005' });
    const hits = e.img.hits.length;
    const r = await v1(e, k.key, { prompt: 'the default size costs more', image_urls: four() });
    assert.equal(r.status, 406);
    assert.match((await envelope(r)).error, /costs 0\.032877 credits and the balance is 0\.005/);
    assert.equal(e.img.hits.length, hits, 'no reference fetched');
    const oa = await openai(e, k.key, { prompt: 'the default size costs more' });
    assert.equal(oa.status, 406);
  });

  it('no free concurrency slot: 429 before any reference is fetched', async () => {
    const k = e.s.createKey({ credits: '1', concurrency: 1 });
    const running = v1(e, k.key, { prompt: '[[fault:sleep:100]] holds the slot', ...SMALL, steps: 10 });
    await until('it runs', async () => (await rowsOf(e, k.account_id)).some((r) => r.status === 'PROCESSING'));
    const hits = e.img.hits.length;
    const r = await v1(e, k.key, { prompt: 'second', ...SMALL, image_urls: four() });
    assert.equal(r.status, 429);
    assert.equal((await envelope(r)).code, 'concurrency_limited');
    assert.equal(e.img.hits.length, hits, 'no reference fetched');
    assert.equal((await running).status, 200);
    await assertExact(e);
  });

  it('large bodies are refused from their headers: no credits (406), not admin (403), over a small route limit (413)', async () => {
    const broke = e.s.createKey({ credits: '0' });
    const user = e.s.createKey({ credits: '1' });
    const admin = e.s.createKey({ credits: '0', admin: true });
    const big = (path: string, key: string, length: number) =>
      rawExchange(e.s.url, `POST ${path} HTTP/1.1\r\nhost: x\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n{"prompt":`, { waitMs: 10_000 });
    const cases: Array<[string, string, number, number, string]> = [
      ['/v1/flux-2-klein-4b', broke.key, 60_000_000, 406, 'insufficient_credits'],
      ['/v1/images/generations', broke.key, 60_000_000, 406, 'insufficient_credits'],
      ['/admin/accounts/acct_x/credits', user.key, 60_000_000, 403, 'forbidden'],
      ['/admin/accounts/acct_x/credits', admin.key, 1_000_000, 413, 'payload_too_large'],
      ['/v2/requests/abc/cancel', user.key, 1_000_000, 413, 'payload_too_large'],
    ];
    for (const [path, key, length, status, code] of cases) {
      const a = await big(path, key, length);
      assert.equal(a.status, status, `${path}: ${a.body}`);
      // The OpenAI routes answer in OpenAI's envelope (contract §8), the others in ours.
      const body = JSON.parse(a.body) as { code?: string; error?: { code?: string } | string };
      assert.equal(path.startsWith('/v1/images/') ? (body.error as { code?: string }).code : body.code, code, `${path}: ${a.body}`);
      assert.ok(a.closed, `${path}: the connection is closed after an answer given before the body (${a.ms} ms)`);
    }
  });

  it('the per-minute rate limit: 429 before any reference is fetched', async () => {
    const k = e.s.createKey({ credits: '1', rpm: 1 });
    await awayFromMinuteEdge();
    const first = await v1(e, k.key, { prompt: 'uses the minute', ...SMALL });
    assert.equal(first.status, 200, await first.clone().text());
    await first.arrayBuffer();
    const hits = e.img.hits.length;
    const r = await v1(e, k.key, { prompt: 'over the limit', ...SMALL, image_urls: four() });
    assert.equal(r.status, 429);
    assert.equal((await envelope(r)).code, 'rate_limited');
    assert.ok(Number(r.headers.get('retry-after')) >= 1, 'Retry-After is set');
    assert.equal(e.img.hits.length, hits, 'no reference fetched');
    assert.equal((await rowsOf(e, k.account_id)).length, 1, 'only the first request has a row');
    await assertExact(e);
  });

  it('large bodies on v2 and on the OpenAI edits form are refused from their headers: no credits (406), over the body limit (413)', async () => {
    const broke = e.s.createKey({ credits: '0' });
    const user = e.s.createKey({ credits: '1' });
    const overLimit = 64 * 1024 * 1024 + 1; // KLEIN_BODY_LIMIT's default is 64 MiB
    const form = 'multipart/form-data; boundary=xx';
    const formStart = '--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n';
    // [path, auth header, content type, first bytes of the body, Content-Length, status, code]
    const cases: Array<[string, string, string, string, number, number, string]> = [
      ['/v2/flux-2-klein-4b', `x-api-key: ${broke.key}`, 'application/json', '{"prompt":', 60_000_000, 406, 'insufficient_credits'],
      ['/v2/flux-2-klein-4b', `x-api-key: ${user.key}`, 'application/json', '{"prompt":', overLimit, 413, 'payload_too_large'],
      ['/v1/images/edits', `authorization: Bearer ${broke.key}`, form, formStart, 60_000_000, 406, 'insufficient_credits'],
      ['/v1/images/edits', `authorization: Bearer ${user.key}`, form, formStart, overLimit, 413, 'payload_too_large'],
    ];
    for (const [path, auth, type, start, length, status, code] of cases) {
      const before = await e.db.selectFrom('requests').select('id').execute();
      const a = await rawExchange(e.s.url, `POST ${path} HTTP/1.1\r\nhost: x\r\n${auth}\r\ncontent-type: ${type}\r\ncontent-length: ${length}\r\n\r\n${start}`, { waitMs: 10_000 });
      // Answered with the body nowhere near sent: nothing waited for it, nothing buffered it.
      assert.equal(a.status, status, `${path} (${length} bytes): ${a.body}`);
      const body = JSON.parse(a.body) as { code?: string; error?: { code?: string } | string };
      assert.equal(path.startsWith('/v1/images/') ? (body.error as { code?: string }).code : body.code, code, `${path}: ${a.body}`);
      assert.ok(a.closed, `${path}: the connection is closed after an answer given before the body (${a.ms} ms)`);
      assert.equal((await e.db.selectFrom('requests').select('id').execute()).length, before.length, `${path}: nothing queued`);
      await assertExact(e);
    }
  });

  it('cancel is rate limited like every write', async () => {
    const k = e.s.createKey({ credits: '1', rpm: 2 });
    await awayFromMinuteEdge();
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) codes.push((await fetch(`${e.s.url}/v2/requests/none/cancel`, { method: 'POST', headers: { 'x-api-key': k.key } })).status);
    assert.deepEqual(codes, [404, 404, 429]);
  });
});

describe('the OpenAI edits form is held to KLEIN_BODY_LIMIT without a Content-Length', () => {
  let s: TestServer;
  let db: Kysely<Database>;
  before(async () => {
    s = await startTestServer({ KLEIN_MODEL: 'simulated:5', KLEIN_BODY_LIMIT: '100000' });
    db = openDatabase({ dataDir: s.dataDir });
  });
  after(async () => {
    await db?.destroy();
    await s?.close();
  });

  it('a chunked form past the limit: 413 in OpenAI\'s envelope while it is still arriving, the connection closed', async () => {
    const user = s.createKey({ credits: '1' });
    const chunk = (data: string) => `${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n`;
    const part = `--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`;
    const head = `POST /v1/images/edits HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${user.key}\r\ncontent-type: multipart/form-data; boundary=xx\r\ntransfer-encoding: chunked\r\n\r\n`;
    // 150 kB of one image part (each part's own limit is 20 MB), and the form never ends.
    const a = await rawExchange(s.url, head + chunk(part) + chunk('x'.repeat(50_000)) + chunk('x'.repeat(50_000)) + chunk('x'.repeat(50_000)), { waitMs: 10_000 });
    assert.equal(a.status, 413, a.body);
    assert.equal((JSON.parse(a.body) as { error: { code: string } }).error.code, 'payload_too_large', a.body);
    assert.ok(a.closed, `closed (${a.ms} ms)`);
    assert.equal((await db.selectFrom('requests').select('id').execute()).length, 0, 'nothing queued');
    assert.deepEqual(await ledgerProblems(db), []);
  });
});
