/**
 * The synchronous endpoint end to end: the real server on a loopback port, the real
 * engine on `tiny`, real HTTP (issue: Segmind-compatible API, "What must be shown").
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ASPECT_RATIOS, sizeForRatio } from '../../src/contract/aspect-ratios.js';
import { FAST, generate, startTestServer, type KeyInfo, type TestServer } from './harness.js';
import { openDatabase } from '../../src/store/db.js';
import { awayFromMinuteEdge } from '../support/minute-window.js';
import { until } from '../support/until.js';

async function pngOf(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();
}

async function noisePng(width: number, height: number, seed: number): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  let x = seed;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    data[i] = x & 0xff;
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

async function bytesOf(r: Response): Promise<Buffer> {
  return Buffer.from(await r.arrayBuffer());
}

async function ok(r: Response): Promise<Buffer> {
  const b = await bytesOf(r);
  assert.equal(r.status, 200, `expected 200, got ${r.status}: ${b.toString('utf8').slice(0, 300)}`);
  return b;
}

describe('POST /v1/flux-2-klein-4b end to end (tiny engine)', () => {
  let s: TestServer;
  let key: KeyInfo;
  let imageHost: Server;
  let imageUrl = '';

  before(async () => {
    imageHost = createServer(async (req, res) => {
      const body = await noisePng(200, 120, 7);
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(body);
    });
    await new Promise<void>((r) => imageHost.listen(0, '127.0.0.1', r));
    imageUrl = `http://127.0.0.1:${(imageHost.address() as AddressInfo).port}/ref.png`;
    s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1', KLEIN_ALLOW_NETWORKS: '127.0.0.1/32' });
    key = s.createKey({ credits: '1000', rpm: 1000, concurrency: 4 });
  });

  after(async () => {
    await s?.close();
    imageHost?.close();
  });

  it('answers every aspect_ratio with the exact size of the table', async () => {
    for (const [ratio, size] of Object.entries(ASPECT_RATIOS)) {
      const r = await generate(s.url, key.key, { prompt: 'a lighthouse', aspect_ratio: ratio, steps: 1, cfg: 1 });
      const meta = await sharp(await ok(r)).metadata();
      assert.deepEqual([meta.width, meta.height], [size.width, size.height], ratio);
    }
  });

  it('sends png, jpeg and webp as their bytes say, with all the x- headers', async () => {
    for (const [format, type] of [['png', 'image/png'], ['jpeg', 'image/jpeg'], ['jpg', 'image/jpeg'], ['webp', 'image/webp']] as const) {
      const r = await generate(s.url, key.key, { prompt: 'a fox', image_format: format, ...FAST });
      const b = await ok(r);
      assert.equal(r.headers.get('content-type'), type);
      const meta = await sharp(b).metadata();
      assert.equal(meta.format, type === 'image/png' ? 'png' : type === 'image/jpeg' ? 'jpeg' : 'webp');
      assert.match(r.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
      assert.equal(r.headers.get('x-seed-value'), '3425234');
      assert.match(r.headers.get('x-generation-time') ?? '', /^\d+\.\d{2}$/);
      assert.ok(Number(r.headers.get('x-cost')) > 0);
      assert.ok(r.headers.get('x-remaining-credits') !== null);
      assert.ok(r.headers.get('x-rate-limit-remaining') !== null);
      assert.ok(!Number.isNaN(Date.parse(r.headers.get('x-rate-limit-reset-at-utc') ?? '')));
    }
  });

  it('gives identical bytes for the same seed and different bytes for another seed', async () => {
    const a = await ok(await generate(s.url, key.key, { prompt: 'a red bicycle', seed: 11, ...FAST }));
    const b = await ok(await generate(s.url, key.key, { prompt: 'a red bicycle', seed: 11, ...FAST }));
    const c = await ok(await generate(s.url, key.key, { prompt: 'a red bicycle', seed: 12, ...FAST }));
    assert.ok(a.equals(b), 'same seed, same bytes');
    assert.ok(!a.equals(c), 'other seed, other bytes');
  });

  it('changes the image with sampler, cfg, steps and a reference image', async () => {
    const base = { prompt: 'a cabin', seed: 5, width: 64, height: 64, steps: 2, cfg: 1 };
    const raw = async (body: Record<string, unknown>) =>
      (await sharp(await ok(await generate(s.url, key.key, body))).raw().toBuffer()).toString('hex');
    const ref = `data:image/png;base64,${(await noisePng(64, 64, 3)).toString('base64')}`;
    const b0 = await raw(base);
    assert.notEqual(await raw({ ...base, sampler: 'res_2s' }), b0, 'sampler');
    assert.notEqual(await raw({ ...base, cfg: 3 }), b0, 'cfg');
    assert.notEqual(await raw({ ...base, steps: 3 }), b0, 'steps');
    assert.notEqual(await raw({ ...base, image_urls: [ref] }), b0, 'reference image');
  });

  it('edits through a data: URI and through an http URL on loopback, and follows match_input_image', async () => {
    const png = await noisePng(200, 120, 7);
    const viaData = await ok(
      await generate(s.url, key.key, { prompt: 'make it blue', image_urls: [`data:image/png;base64,${png.toString('base64')}`], aspect_ratio: 'match_input_image', steps: 1, cfg: 1 }),
    );
    const viaHttp = await ok(
      await generate(s.url, key.key, { prompt: 'make it blue', image_urls: [imageUrl], aspect_ratio: 'match_input_image', steps: 1, cfg: 1 }),
    );
    assert.ok(viaData.equals(viaHttp), 'the same picture by data: and by URL gives the same image');
    const meta = await sharp(viaHttp).metadata();
    const want = sizeForRatio(200 / 120);
    assert.deepEqual([meta.width, meta.height], [want.width, want.height]);
  });

  it('answers JSON with base64 when asked, by field or by Accept', async () => {
    for (const [body, headers] of [
      [{ prompt: 'x', base64: true, ...FAST }, {}],
      [{ prompt: 'x', ...FAST }, { accept: 'application/json' }],
    ] as const) {
      const r = await generate(s.url, key.key, body, headers);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      const j = (await r.json()) as Record<string, unknown>;
      const img = Buffer.from(String(j.image), 'base64');
      assert.equal((await sharp(img).metadata()).format, 'png');
      assert.equal(j.width, 64);
      assert.equal(j.seed, 3425234);
      assert.equal(typeof j.request_id, 'string');
      for (const f of ['generation_time', 'cost', 'remaining_credits']) assert.equal(typeof j[f], 'number', f);
    }
  });

  it('picks and reports a random seed for -1', async () => {
    const r = await generate(s.url, key.key, { prompt: 'x', seed: -1, ...FAST });
    await ok(r);
    const seed = Number(r.headers.get('x-seed-value'));
    assert.ok(Number.isSafeInteger(seed) && seed >= 0);
    const again = await ok(await generate(s.url, key.key, { prompt: 'x', seed, ...FAST }));
    const first = await ok(await generate(s.url, key.key, { prompt: 'x', seed, ...FAST }));
    assert.ok(again.equals(first));
  });

  it('charges exactly x-cost, and answers 406 once the credits run out', async () => {
    const poor = s.createKey({ credits: '0.01' });
    const before = await credits(s.url, poor.key);
    const r = await generate(s.url, poor.key, { prompt: 'x', ...FAST });
    await ok(r);
    const cost = Number(r.headers.get('x-cost'));
    const afterOne = await credits(s.url, poor.key);
    assert.equal(Math.round((before - afterOne) * 1e6), Math.round(cost * 1e6));
    assert.equal(Number(r.headers.get('x-remaining-credits')), afterOne);
    const big = await generate(s.url, poor.key, { prompt: 'x' }); // 1024², 20 steps, cfg 5
    assert.equal(big.status, 406);
    const body = (await big.json()) as { code: string; error: string };
    assert.equal(body.code, 'insufficient_credits');
    assert.match(body.error, /costs [\d.]+ credits and the balance is [\d.]+/);
    assert.equal(await credits(s.url, poor.key), afterOne, '406 charges nothing');
  });

  it('refuses a second request over the concurrency limit with 429', async () => {
    const k = s.createKey({ credits: '100', concurrency: 1 });
    const slow = generate(s.url, k.key, { prompt: 'slow [[fault:sleep:400]]', ...FAST, steps: 4 });
    // The slow call holds the key's slot from admission: the second is sent once its row
    // exists, not after a guessed delay that a loaded machine can outlast.
    await until('the slow call is admitted', async () => (await statusesOf(s, k)).length > 0);
    const second = await generate(s.url, k.key, { prompt: 'x', ...FAST });
    assert.equal(second.status, 429);
    assert.equal(((await second.json()) as { code: string }).code, 'concurrency_limited');
    assert.ok(second.headers.get('retry-after'));
    await ok(await slow);
  });

  it('refuses requests over the per-minute limit with 429, Retry-After and the reset time', async () => {
    const k = s.createKey({ credits: '100', rpm: 2 });
    await awayFromMinuteEdge();
    for (let i = 0; i < 2; i++) assert.equal((await fetch(`${s.url}/v1/flux-2-klein-4b`, { method: 'POST', headers: { 'x-api-key': k.key, 'content-type': 'application/json' }, body: '{}' })).status, 400);
    const r = await generate(s.url, k.key, { prompt: 'x', ...FAST });
    assert.equal(r.status, 429);
    assert.equal(((await r.json()) as { code: string }).code, 'rate_limited');
    const retry = Number(r.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 60);
    assert.ok(Date.parse(r.headers.get('x-rate-limit-reset-at-utc') ?? '') > Date.now());
  });

  it('answers 502 when the engine dies mid-job, releases the credits, restarts it and serves the next request', async () => {
    const k = s.createKey({ credits: '100' });
    const before = await credits(s.url, k.key);
    const pending = generate(s.url, k.key, { prompt: 'doomed [[fault:sleep:500]]', ...FAST, steps: 6 });
    await until('the doomed call runs', async () => (await statusesOf(s, k)).includes('PROCESSING'));
    const pid = s.server.engine?.pid;
    assert.ok(pid, 'engine pid');
    process.kill(pid, 'SIGKILL');
    const r = await pending;
    assert.equal(r.status, 502);
    assert.equal(((await r.json()) as { code: string }).code, 'engine_failed');
    assert.equal(await credits(s.url, k.key), before, 'a failed request is not charged');
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const h = (await (await fetch(`${s.url}/health`)).json()) as { status: string };
      if (h.status === 'READY') break;
      await new Promise((res) => setTimeout(res, 200));
    }
    await ok(await generate(s.url, k.key, { prompt: 'after the crash', ...FAST }));
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /klein_engine_restarts_total [1-9]/);
  });

  it('writes the generation parameters into the PNG, and exports metrics per stage', async () => {
    const b = await ok(await generate(s.url, key.key, { prompt: 'metadata check', seed: 42, ...FAST }));
    assert.ok(b.includes(Buffer.from('tEXtparameters')), 'PNG tEXt chunk "parameters"');
    assert.ok(b.includes(Buffer.from('metadata check')));
    const m = await (await fetch(`${s.url}/metrics`)).text();
    for (const stage of ['queue', 'text', 'denoise', 'decode', 'encode', 'fetch']) {
      assert.match(m, new RegExp(`klein_stage_seconds_count\\{stage="${stage}"\\} [1-9]`), stage);
    }
    assert.match(m, /klein_http_requests_total\{route="\/v1\/flux-2-klein-4b",method="POST",status="200"\} [1-9]/);
    assert.match(m, /klein_jobs_waiting\{model="flux-2-klein-4b"\} 0/);
  });
});

describe('sync timeout, start-up and body limit (separate servers)', () => {
  it('cancels with 504 when the sync timeout passes, without charging', async () => {
    const s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1', KLEIN_SYNC_TIMEOUT: '2' });
    try {
      const k = s.createKey({ credits: '100' });
      const before = await credits(s.url, k.key);
      const r = await generate(s.url, k.key, { prompt: 'slow [[fault:sleep:400]]', ...FAST, steps: 20 });
      assert.equal(r.status, 504);
      assert.equal(((await r.json()) as { code: string }).code, 'timeout');
      assert.equal(await credits(s.url, k.key), before);
      // The server still serves: asked asynchronously, so that a slow machine cannot turn
      // this check into a second sync timeout.
      const next = await fetch(`${s.url}/v2/flux-2-klein-4b`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': k.key },
        body: JSON.stringify({ prompt: 'fast', ...FAST }),
      });
      assert.equal(next.status, 200);
      const id = ((await next.json()) as { request_id: string }).request_id;
      for (let status = ''; status !== 'COMPLETED'; await new Promise((r) => setTimeout(r, 50))) {
        status = ((await (await fetch(`${s.url}/v2/requests/${id}/status`, { headers: { 'x-api-key': k.key } })).json()) as { status: string }).status;
        assert.ok(['QUEUED', 'PROCESSING', 'COMPLETED'].includes(status), status);
      }
    } finally {
      await s.close();
    }
  });

  it('answers 413 for a body over the limit', async () => {
    const s = await startTestServer({ KLEIN_BODY_LIMIT: '100000' });
    try {
      const k = s.createKey({ credits: '100' });
      const big = `data:image/png;base64,${'A'.repeat(200_000)}`;
      const r = await generate(s.url, k.key, { prompt: 'x', image_urls: [big] });
      assert.equal(r.status, 413);
      assert.equal(((await r.json()) as { code: string }).code, 'payload_too_large');
    } finally {
      await s.close();
    }
  });
});

/** The statuses of a key's requests, read from the server's database. */
async function statusesOf(s: TestServer, k: KeyInfo): Promise<string[]> {
  const db = openDatabase({ dataDir: s.dataDir });
  try {
    return (await db.selectFrom('requests').select('status').where('key_id', '=', k.key_id).execute()).map((r) => r.status);
  } finally {
    await db.destroy();
  }
}

async function credits(url: string, key: string): Promise<number> {
  const r = await fetch(`${url}/v1/get-user-credits`, { headers: { 'x-api-key': key } });
  assert.equal(r.status, 200);
  return Number(((await r.json()) as { credits: string | number }).credits);
}

export { pngOf };
