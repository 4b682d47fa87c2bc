/** The typed client and the `klein generate` command, end to end against the real server. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { KleinApiError, KleinClient, type KleinEvent } from '../../src/client/index.js';
import { FAST, startTestServer, type KeyInfo, type TestServer } from './harness.js';

const root = new URL('../..', import.meta.url).pathname;

describe('typed client and CLI', () => {
  let s: TestServer;
  let key: KeyInfo;
  let client: KleinClient;
  before(async () => {
    s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1' });
    key = s.createKey({ credits: '100', concurrency: 8 });
    client = new KleinClient({ baseUrl: s.url, apiKey: key.key });
  });
  after(() => s?.close());

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
    const env = { ...process.env, KLEIN_URL: s.url, KLEIN_API_KEY: key.key };
    // Asynchronous: the server runs in this process, so a synchronous spawn would block it.
    const cli = (args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src/cli/main.ts'), 'generate', ...args], { env, encoding: 'utf8', cwd: dir }, (err, stdout, stderr) =>
          resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
        );
      });
    const out = join(dir, 'out.png');
    const r1 = await cli(['a green field', '--image', ref, '--aspect-ratio', 'match_input_image', '--steps', '3', '--cfg', '1', '--out', out]);
    assert.equal(r1.status, 0, r1.stderr);
    assert.match(r1.stderr, /\[#+\.*\] 3\/3/);
    const meta = await sharp(readFileSync(out)).metadata();
    assert.ok(Math.abs(meta.width! / meta.height! - 160 / 96) < 0.02);
    const r2 = await cli(['json please', '--width', '64', '--height', '64', '--steps', '1', '--cfg', '1', '--seed', '77', '--json']);
    assert.equal(r2.status, 0, r2.stderr);
    const j = JSON.parse(r2.stdout) as { request_id: string; file: string; seed: number };
    assert.equal(j.seed, 77);
    assert.ok(readFileSync(join(dir, j.file)).length > 0);
    const r3 = await cli(['x', '--steps', '0']);
    assert.notEqual(r3.status, 0);
    assert.match(r3.stderr, /400 validation_failed.*\n\s+steps: must be/);
  });
});
