/**
 * The typed client and the `klein generate` command, end to end against the real server;
 * LoRA adapters (contract §7) are seeded files of test/clients/make_loras.py served on
 * loopback, which KLEIN_ALLOW_NETWORKS lets the server fetch.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { KleinApiError, KleinClient, type GenerateBody, type KleinEvent } from '../../src/client/index.js';
import type { FileServer } from '../support/safetensors-files.js';
import { makeTestLoras } from '../support/test-loras.js';
import { FAST, startTestServer, type KeyInfo, type TestServer } from './harness.js';

const root = new URL('../..', import.meta.url).pathname;

describe('typed client and CLI', () => {
  let s: TestServer;
  let key: KeyInfo;
  let client: KleinClient;
  let files: FileServer;
  before(async () => {
    files = await makeTestLoras().serve({ 'fox.safetensors': 'fox' });
    s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1', KLEIN_ALLOW_NETWORKS: '127.0.0.0/8' });
    key = s.createKey({ credits: '100', concurrency: 8 });
    client = new KleinClient({ baseUrl: s.url, apiKey: key.key });
  });
  after(async () => {
    await s?.close();
    await files?.close();
  });

  /** `klein generate …` in a child process (asynchronous: the server runs in this process, so a synchronous spawn would block it). */
  const cli = (dir: string, args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const env = { ...process.env, KLEIN_URL: s.url, KLEIN_API_KEY: key.key };
      execFile(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src/cli/main.ts'), 'generate', ...args], { env, encoding: 'utf8', cwd: dir }, (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });

  it('generate (sync) returns the image and its headers; idempotency keys replay', async () => {
    const a = await client.generate({ prompt: 'client', ...FAST, seed: 4 }, { idempotencyKey: 'c-1' });
    assert.equal(a.contentType, 'image/png');
    assert.equal(a.seed, 4);
    assert.ok(a.cost > 0);
    const b = await client.generate({ prompt: 'client', ...FAST, seed: 4 }, { idempotencyKey: 'c-1' });
    assert.equal(b.requestId, a.requestId);
    assert.ok(a.bytes.equals(b.bytes));
  });

  it('run (async) streams events in order; cancel stops a running request', async () => {
    const seen: KleinEvent['event'][] = [];
    const rec = await client.run({ prompt: 'async client', ...FAST, steps: 3 }, { onEvent: (e) => seen.push(e.event) });
    assert.equal(rec.status, 'COMPLETED');
    assert.deepEqual(seen.filter((e) => e === 'progress').length, 3);
    assert.equal(seen.at(-1), 'completed');
    const out = await client.output(rec.request_id);
    assert.equal((await sharp(out.bytes).metadata()).width, 64);
    const sub = await client.submit({ prompt: 'slow [[fault:sleep:300]]', ...FAST, steps: 10 });
    for (let i = 0; i < 100 && (await client.status(sub.request_id)).status !== 'PROCESSING'; i++) await new Promise((r) => setTimeout(r, 50));
    const c = await client.cancel(sub.request_id);
    assert.equal(c.status, 'CANCELLED');
  });

  it('events: a stream cut mid-run is opened again with Last-Event-ID, each step once, then the end', async () => {
    // A proxy that cuts the first event stream through it once a second step has passed.
    const target = new URL(s.url);
    let streams = 0;
    const proxy = createServer((down) => {
      const up = connect(Number(target.port), target.hostname);
      down.pipe(up);
      let first = false;
      let seen = '';
      down.once('data', (d: Buffer) => (first = d.toString('latin1').startsWith('GET ') && d.includes('/events') && ++streams === 1));
      up.on('data', (d: Buffer) => {
        seen += d.toString('latin1');
        if (first && (seen.match(/event: progress/g) ?? []).length >= 2) {
          down.write(d.subarray(0, d.lastIndexOf('event: progress')));
          down.destroy();
          up.destroy();
          return;
        }
        down.write(d);
      });
      up.on('end', () => down.end());
      up.on('error', () => down.destroy());
      down.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const viaProxy = new KleinClient({ baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, apiKey: key.key });
      const sub = await client.submit({ prompt: 'cut [[fault:sleep:150]]', ...FAST, steps: 6 });
      const seen: KleinEvent[] = [];
      for await (const e of viaProxy.events(sub.request_id, { lastEventId: '0' })) seen.push(e);
      assert.ok(streams >= 2, `the stream was opened again (${streams} streams)`);
      const ids = seen.map((e) => Number(e.id));
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'ids in order');
      assert.equal(new Set(ids).size, ids.length, 'no event twice');
      assert.deepEqual(seen.filter((e) => e.event === 'progress').map((e) => (e.data as { step: number }).step), [1, 2, 3, 4, 5, 6]);
      assert.equal(seen.at(-1)?.event, 'completed');
    } finally {
      proxy.close();
    }
  });

  it('throws typed errors with status, code and field details', async () => {
    await assert.rejects(client.generate({ prompt: 'x', steps: 500 }), (e: unknown) => {
      assert.ok(e instanceof KleinApiError);
      assert.equal(e.status, 400);
      assert.equal(e.code, 'validation_failed');
      assert.equal(e.details[0]?.field, 'steps');
      return true;
    });
    const bad = new KleinClient({ baseUrl: s.url, apiKey: 'kl_nope' });
    await assert.rejects(bad.credits(), (e: unknown) => e instanceof KleinApiError && e.status === 401 && e.code === 'unauthorized');
    await assert.rejects(client.status('nope'), (e: unknown) => e instanceof KleinApiError && e.status === 404);
  });

  it('klein generate writes the image, shows progress, and prints JSON for scripts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'klein-cli-'));
    const ref = join(dir, 'ref.png');
    writeFileSync(ref, await sharp({ create: { width: 160, height: 96, channels: 3, background: '#00aa55' } }).png().toBuffer());
    const out = join(dir, 'out.png');
    const r1 = await cli(dir, ['a green field', '--image', ref, '--aspect-ratio', 'match_input_image', '--steps', '3', '--cfg', '1', '--out', out]);
    assert.equal(r1.status, 0, r1.stderr);
    assert.match(r1.stderr, /\[#+\.*\] 3\/3/);
    const meta = await sharp(readFileSync(out)).metadata();
    assert.ok(Math.abs(meta.width! / meta.height! - 160 / 96) < 0.02);
    const r2 = await cli(dir, ['json please', '--width', '64', '--height', '64', '--steps', '1', '--cfg', '1', '--seed', '77', '--json']);
    assert.equal(r2.status, 0, r2.stderr);
    const j = JSON.parse(r2.stdout) as { request_id: string; file: string; seed: number };
    assert.equal(j.seed, 77);
    assert.ok(readFileSync(join(dir, j.file)).length > 0);
    const r3 = await cli(dir, ['x', '--steps', '0']);
    assert.notEqual(r3.status, 0);
    assert.match(r3.stderr, /400 validation_failed.*\n\s+steps: must be/);
  });

  it('the typed client sends loras (typed from the schema); the adapter changes the image and the record keeps it', async () => {
    const body: GenerateBody = { prompt: 'a red fox', ...FAST, seed: 11 };
    const loras: GenerateBody['loras'] = [{ path: `${files.base}/fox.safetensors`, scale: 0.8 }];
    // @ts-expect-error a scale is a number (the schema's type), not a string
    const wrong: GenerateBody['loras'] = [{ path: 'x.safetensors', scale: '0.8' }];
    assert.equal(wrong?.length, 1);
    const plain = await client.run(body);
    const adapted = await client.run({ ...body, loras });
    assert.equal(adapted.status, 'COMPLETED', JSON.stringify(adapted.error));
    assert.deepEqual((await client.get(adapted.request_id)).input.loras, loras);
    assert.ok(!(await client.output(plain.request_id)).bytes.equals((await client.output(adapted.request_id)).bytes), 'the adapter changes the image');
    await assert.rejects(client.generate({ ...body, loras: [{ path: '../fox.safetensors' }] }), (e: unknown) => {
      assert.ok(e instanceof KleinApiError);
      assert.equal(e.status, 400);
      assert.equal(e.code, 'invalid_lora');
      assert.equal(e.details[0]?.field, 'loras[0].path');
      return true;
    });
  });

  it('klein generate --lora PATH[:SCALE] applies adapters; a bad scale or a fourth adapter is refused before any request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'klein-cli-lora-'));
    const url = `${files.base}/fox.safetensors`;
    const common = ['a red fox', '--width', '64', '--height', '64', '--steps', '2', '--cfg', '1', '--seed', '21', '--json'];
    const run = async (name: string, extra: string[]) => {
      const r = await cli(dir, [...common, '--out', name, ...extra]);
      assert.equal(r.status, 0, r.stderr);
      const j = JSON.parse(r.stdout) as { request_id: string; file: string };
      return { bytes: readFileSync(join(dir, j.file)), loras: (await client.get(j.request_id)).input.loras as GenerateBody['loras'] };
    };
    const plain = await run('plain.png', []);
    assert.deepEqual(plain.loras, [], 'none sent: the schema default');
    const scaled = await run('scaled.png', ['--lora', `${url}:0.8`]);
    assert.deepEqual(scaled.loras, [{ path: url, scale: 0.8 }], 'the scale after the last colon; the port stays in the URL');
    assert.ok(!scaled.bytes.equals(plain.bytes), 'the adapter changes the image');
    const two = await run('two.png', ['--lora', url, '--lora', `${url}:-0.5`]);
    assert.deepEqual(two.loras?.map((l) => [l.path, l.scale ?? 1]), [[url, 1], [url, -0.5]]);
    assert.ok(!two.bytes.equals(scaled.bytes));
    // Scale 0 is the base model, byte for byte.
    assert.ok((await run('zero.png', ['--lora', `${url}:0`])).bytes.equals(plain.bytes));

    const before = files.requests.get('/fox.safetensors');
    const bad = await cli(dir, [...common, '--lora', `${url}:strong`]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /klein: --lora \S+:strong: the scale after the last ':' must be a number from -4 to 4, not 'strong'/);
    const far = await cli(dir, [...common, '--lora', 'fox.safetensors:4.5']);
    assert.match(far.stderr, /klein: --lora fox\.safetensors:4\.5: scale 4\.5 is outside -4 to 4/);
    const four = await cli(dir, [...common, ...[1, 2, 3, 4].flatMap(() => ['--lora', url])]);
    assert.match(four.stderr, /klein: --lora: at most 3 adapters, 4 given/);
    assert.equal(files.requests.get('/fox.safetensors'), before, 'no request reached the server');
    // What the server refuses is said with the field it names.
    const refused = await cli(dir, [...common, '--lora', '../fox.safetensors']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /400 invalid_lora: .*\n\s+loras\[0\]\.path: /);
  });
});
