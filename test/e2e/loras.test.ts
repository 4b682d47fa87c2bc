/**
 * LoRA adapters at request time through the whole server (contract §7): the real gateway,
 * the real engine on `tiny`, LoRA files served by a loopback HTTP server that honours Range
 * (and counts what it sends), seeded random adapters written by the engine's own test
 * layouts (test/support/test-loras.ts).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import OpenAI from 'openai';
import { openDatabase } from '../../src/store/db.js';
import { ledgerProblems } from '../support/ledger-invariant.js';
import type { FileServer } from '../support/safetensors-files.js';
import { makeTestLoras, variant } from '../support/test-loras.js';
import { until } from '../support/until.js';
import { FAST, generate, startTestServer, type TestServer } from './harness.js';

type Json = Record<string, any>;

describe('LoRA adapters (tiny engine)', { timeout: 600_000 }, () => {
  let s: TestServer;
  let files: FileServer;
  let key: string;
  let cacheCap: number;
  const pixels = async (r: Response) => {
    assert.equal(r.status, 200, r.status === 200 ? '' : await r.clone().text());
    return (await sharp(Buffer.from(await r.arrayBuffer())).raw().toBuffer()).toString('hex');
  };
  const rows = async () => {
    const db = openDatabase({ dataDir: s.dataDir, url: null });
    try {
      return Number((await db.selectFrom('requests').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    } finally {
      await db.destroy();
    }
  };
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${s.url}/metrics`)).text())?.[1] ?? 0);

  before(async () => {
    const loras = makeTestLoras();
    const dir = join(loras.dir, 'dir');
    mkdirSync(dir);
    copyFileSync(join(loras.dir, 'kohya.safetensors'), join(dir, 'kohya.safetensors'));
    files = await loras.serve({
      'fox.safetensors': 'fox',
      'fox-again.safetensors': 'fox',
      'fox-openai.safetensors': 'fox',
      'fox-pair.safetensors': variant(loras.read('fox')),
      'kohya-pair.safetensors': variant(loras.read('kohya')),
      'nine.safetensors': 'nine',
    });
    // The disk cache has room for one of the two adapters, not both.
    cacheCap = Math.max(loras.read('fox').length, loras.read('kohya').length) + 1000;
    s = await startTestServer({ KLEIN_ALLOW_NETWORKS: '127.0.0.0/8', KLEIN_LORA_DIR: dir, KLEIN_PRICE_PER_LORA: '0.001', KLEIN_LORA_CACHE_BYTES: String(cacheCap) });
    key = s.createKey({ credits: '100' }).key;
  });
  after(async () => {
    await s?.close();
    await files?.close();
  });

  it('applies an adapter from a URL, charges its surcharge, and leaves requests without one byte-identical', async () => {
    const body = { prompt: 'a red fox', seed: 7, ...FAST };
    const plain = await generate(s.url, key, body);
    const plainCost = Number(plain.headers.get('x-cost'));
    const before = await pixels(plain);
    const withLora = await generate(s.url, key, { ...body, loras: [{ path: `${files.base}/fox.safetensors`, scale: 0.8 }] });
    assert.equal(Number(withLora.headers.get('x-cost')), Number((plainCost + 0.001).toFixed(6)), 'KLEIN_PRICE_PER_LORA per adapter');
    const adapted = await pixels(withLora);
    assert.notEqual(adapted, before, 'the adapter changes the image');
    assert.equal(await pixels(await generate(s.url, key, body)), before, 'a request without loras is byte-identical after a LoRA request');
    // The same adapter at scale 0 is the base model.
    assert.equal(await pixels(await generate(s.url, key, { ...body, loras: [{ path: `${files.base}/fox.safetensors`, scale: 0 }] })), before);
  });

  it('downloads a file once for concurrent requests, counted in /metrics', async () => {
    const downloads = await metric('klein_lora_cache_events_total\\{event="download"\\}');
    const lora = [{ path: `${files.base}/fox-again.safetensors` }];
    const answers = await Promise.all([1, 2, 3].map((seed) => generate(s.url, key, { prompt: 'three at once', seed, ...FAST, loras: lora })));
    for (const a of answers) await pixels(a);
    assert.equal(await metric('klein_lora_cache_events_total\\{event="download"\\}'), downloads + 1);
    // Each admission reads the header with two Range requests; the file itself is fetched once.
    assert.equal(files.requests.get('/fox-again.safetensors'), 3 * 2 + 1);
  });

  it('refuses a LoRA drawn for another model before anything is charged or downloaded', async () => {
    const n = await rows();
    const sent = files.bytesSent();
    const r = await generate(s.url, key, { prompt: 'wrong model', ...FAST, loras: [{ path: `${files.base}/nine.safetensors` }] });
    assert.equal(r.status, 400);
    const b = (await r.json()) as Json;
    assert.equal(b.code, 'invalid_lora');
    assert.equal(b.details[0].field, 'loras[0].path');
    assert.match(b.details[0].message, /inputs|outputs/);
    assert.equal(await rows(), n, 'nothing queued');
    assert.ok(files.bytesSent() - sent < 188_000 / 2, 'only its header was read');
  });

  it('takes a file of KLEIN_LORA_DIR by name (kohya layout) and refuses paths out of it', async () => {
    const plain = await pixels(await generate(s.url, key, { prompt: 'dir', seed: 3, ...FAST }));
    assert.notEqual(await pixels(await generate(s.url, key, { prompt: 'dir', seed: 3, ...FAST, loras: [{ path: 'kohya.safetensors', scale: 1.5 }] })), plain);
    for (const path of ['../kohya.safetensors', '/etc/passwd', 'missing.safetensors']) {
      const r = await generate(s.url, key, { prompt: 'x', ...FAST, loras: [{ path }] });
      assert.equal(r.status, 400, path);
      assert.equal(((await r.json()) as Json).code, 'invalid_lora', path);
    }
    const tooMany = await generate(s.url, key, { prompt: 'x', ...FAST, loras: [1, 2, 3, 4].map(() => ({ path: 'kohya.safetensors' })) });
    assert.equal(tooMany.status, 400);
    assert.equal(((await tooMany.json()) as Json).details[0].field, 'loras');
  });

  it('takes loras on the OpenAI route and on /v2', async () => {
    const openai = new OpenAI({ apiKey: key, baseURL: `${s.url}/v1`, maxRetries: 0 });
    const args = { prompt: 'via openai', size: '64x64', seed: 5, steps: 2, cfg: 1 };
    const plain = await openai.images.generate(args as never);
    const adapted = await openai.images.generate({ ...args, loras: [{ path: `${files.base}/fox.safetensors` }] } as never);
    assert.notEqual(adapted.data![0]!.b64_json, plain.data![0]!.b64_json);
    // Two images of one call: the header is read once for the call, the file fetched once.
    const two = await openai.images.generate({ ...args, n: 2, loras: [{ path: `${files.base}/fox-openai.safetensors` }] } as never);
    assert.equal(two.data?.length, 2);
    assert.equal(files.requests.get('/fox-openai.safetensors'), 2 + 1);
    const sub = (await (await fetch(`${s.url}/v2/flux-2-klein-4b`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({ prompt: 'async', ...FAST, loras: [{ path: 'kohya.safetensors', scale: 0.5 }] }),
    })).json()) as Json;
    for (;;) {
      const rec = (await (await fetch(`${s.url}/v2/requests/${sub.request_id}`, { headers: { 'x-api-key': key } })).json()) as Json;
      if (rec.status === 'COMPLETED') {
        assert.deepEqual(rec.input.loras, [{ path: 'kohya.safetensors', scale: 0.5 }]);
        break;
      }
      assert.ok(['QUEUED', 'PROCESSING'].includes(rec.status), JSON.stringify(rec));
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it('holds a batch\'s files until its run ends: two adapters larger together than the disk cache both apply, and the cache is back under its cap after', async () => {
    const body = { prompt: 'two adapters', seed: 11, ...FAST };
    const plain = await pixels(await generate(s.url, key, body));
    const fox = await pixels(await generate(s.url, key, { ...body, loras: [{ path: `${files.base}/fox.safetensors` }] }));
    // Two files no engine has loaded, both downloaded for this one run: the second to land
    // would evict the first, least recently used, were it not held until the engine read it.
    const both = await generate(s.url, key, { ...body, loras: [{ path: `${files.base}/fox-pair.safetensors` }, { path: `${files.base}/kohya-pair.safetensors` }] });
    const pair = await pixels(both);
    assert.notEqual(pair, plain);
    assert.notEqual(pair, fox, 'the second adapter applies too');
    const cached = async () => {
      const names = (await readdir(join(s.dataDir, 'loras'))).filter((n) => n.endsWith('.safetensors'));
      // A file may go between the listing and its stat: the eviction is under way.
      const sizes = await Promise.all(names.map((n) => stat(join(s.dataDir, 'loras', n)).then((st) => st.size, () => 0)));
      return sizes.reduce((a, b) => a + b, 0);
    };
    await until('the cache is back under its cap once the run released its files', async () => (await cached()) <= cacheCap);
  });

  it('keeps the ledger exact', async () => {
    const db = openDatabase({ dataDir: s.dataDir, url: null });
    try {
      assert.deepEqual(await ledgerProblems(db), []);
    } finally {
      await db.destroy();
    }
  });
});
