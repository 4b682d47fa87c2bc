/**
 * The disk cache: one download for concurrent requests of a source (a counting loopback
 * server), files named by their SHA-256, hits without a request, LRU eviction by bytes
 * (never of a file a batch holds),
 * nothing left behind by an aborted, failed, oversized or malformed download, the hub's token
 * sent to the hub only, KLEIN_LORA_DIR files hashed in place, and the index surviving a restart.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { ApiError } from '../contract/errors.js';
import { parseAllowNetworks } from '../net/networks.js';
import { LoraCache, type LoraCacheEvent, type LoraCacheOptions } from './cache.js';
import { parseLoraSource } from './source.js';
import { pair, raw, safetensors, startFileServer, type FileServer } from '../../test/support/safetensors-files.js';
import { until } from '../../test/support/until.js';

const loopback = parseAllowNetworks('127.0.0.1/32');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const lora = (seed: number) => safetensors(pair('transformer.a', 'lora_A', 4, 256, 256), undefined, seed);
const A = lora(1);
const B = lora(2);
const C = lora(3);
const get = { maxBytes: 2 ** 31 };

describe('LoraCache', () => {
  let server: FileServer;
  let slow: FileServer;
  let dir: string;
  let loraDir: string;
  let events: LoraCacheEvent[];
  let clock = 0;
  const auth: Array<[string, string | undefined]> = [];

  before(async () => {
    slow = await startFileServer({ honourRange: true, files: { '/slow.safetensors': A }, delayMs: 1500 });
    server = await startFileServer({
      honourRange: true,
      files: { '/a.safetensors': A, '/a-again.safetensors': A, '/b.safetensors': B, '/c.safetensors': C, '/bad.safetensors': raw('{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', Buffer.alloc(8)), '/owner/repo/resolve/main/pytorch_lora_weights.safetensors': B },
      redirects: { '/to-blocked': 'http://10.0.0.1/x.safetensors' },
      onRequest: (req) => auth.push([req.url ?? '', req.headers.authorization]),
    });
  });
  after(async () => {
    await server.close();
    await slow.close();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'klein-lora-cache-'));
    loraDir = await mkdtemp(join(tmpdir(), 'klein-lora-dir-'));
    events = [];
    server.requests.clear();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(loraDir, { recursive: true, force: true });
  });

  const open = (more: Partial<LoraCacheOptions> = {}) =>
    LoraCache.open({ dir, maxCacheBytes: 2 ** 34, allow: loopback, downloadTimeoutMs: 10_000, onEvent: (e) => events.push(e), now: () => ++clock, ...more });
  const url = (path: string, i = 0) => parseLoraSource({ path: `${server.base}${path}` }, i);

  it('downloads a source once for concurrent requests, names it by its SHA-256, then hits', async () => {
    const cache = await open();
    const results = await Promise.all(Array.from({ length: 5 }, () => cache.get(url('/a.safetensors'), get)));
    assert.equal(server.requests.get('/a.safetensors'), 1);
    for (const r of results) {
      assert.equal(r.key, sha(A));
      assert.equal(r.path, join(dir, `${sha(A)}.safetensors`));
      assert.equal(r.bytes, A.length);
      assert.equal(r.downloaded, true);
      assert.equal(r.header.tensors.length, 2);
    }
    assert.deepEqual(await readFile(results[0]!.path), A);
    const again = await cache.get(url('/a.safetensors'), get);
    assert.deepEqual([again.key, again.downloaded, again.seconds], [sha(A), false, 0]);
    assert.equal(server.requests.get('/a.safetensors'), 1);
    assert.deepEqual(events.map((e) => e.type), ['download', 'hit']);
    const download = events[0];
    assert.ok(download?.type === 'download');
    assert.equal(download.bytes, A.length);
  });

  it('keeps one file for two URLs of the same content', async () => {
    const cache = await open();
    const one = await cache.get(url('/a.safetensors'), get);
    const two = await cache.get(url('/a-again.safetensors'), get);
    assert.equal(one.path, two.path);
    assert.equal(cache.totalBytes, A.length);
  });

  it('evicts the least recently used files once the total passes the cap', async () => {
    const cache = await open({ maxCacheBytes: A.length * 2 + 10 });
    await cache.get(url('/a.safetensors'), get);
    await cache.get(url('/b.safetensors'), get);
    await cache.get(url('/a.safetensors'), get); // A is now more recent than B
    assert.deepEqual(cache.lruOrder(), [sha(B), sha(A)]);
    await cache.get(url('/c.safetensors'), get);
    assert.deepEqual(cache.lruOrder(), [sha(A), sha(C)]);
    assert.deepEqual(events.filter((e) => e.type === 'evicted'), [{ type: 'evicted', key: sha(B), bytes: B.length }]);
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.safetensors')).sort(), [`${sha(A)}.safetensors`, `${sha(C)}.safetensors`].sort());
    // B's source is forgotten with its file: asked again, it is downloaded again.
    await cache.get(url('/b.safetensors'), get);
    assert.equal(server.requests.get('/b.safetensors'), 2);
  });

  it('never evicts a file a batch holds: the cap is passed meanwhile, and the file goes at its release', async () => {
    const cache = await open({ maxCacheBytes: A.length + 10 }); // room for one file
    const files = (names: string[]) => readdir(dir).then((all) => all.filter((f) => f.endsWith('.safetensors')).sort()).then((have) => assert.deepEqual(have, names.sort()));
    const a = await cache.get(url('/a.safetensors'), { ...get, hold: true });
    // B's download passes the cap, and A, the least recently used, is held by its batch.
    await cache.get(url('/b.safetensors'), get);
    await files([`${sha(A)}.safetensors`, `${sha(B)}.safetensors`]);
    assert.equal(cache.totalBytes, A.length + B.length);
    assert.deepEqual(await readFile(a.path), A, 'the held file is whole');
    await a.release();
    await files([`${sha(B)}.safetensors`]);
    assert.deepEqual(events.filter((e) => e.type === 'evicted'), [{ type: 'evicted', key: sha(A), bytes: A.length }]);
    await a.release(); // a second release does nothing
    // Two batches hold B (hits), and a third holds C while it downloads: all stay until released.
    const b1 = await cache.get(url('/b.safetensors'), { ...get, hold: true });
    const b2 = await cache.get(url('/b.safetensors'), { ...get, hold: true });
    const c = await cache.get(url('/c.safetensors'), { ...get, hold: true });
    await b1.release();
    await files([`${sha(B)}.safetensors`, `${sha(C)}.safetensors`]);
    await b2.release(); // B is the least recently used file held by no one: it goes
    await files([`${sha(C)}.safetensors`]);
    await c.release();
    await files([`${sha(C)}.safetensors`]);
    assert.equal(cache.totalBytes, C.length);
  });

  it('leaves nothing behind when the only caller aborts mid-download', async () => {
    const cache = await open();
    const ac = new AbortController();
    const p = cache.get(parseLoraSource({ path: `${slow.base}/slow.safetensors` }, 0), { ...get, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('client gone')), 200);
    await assert.rejects(p, /client gone/);
    await until('the partial file is removed', async () => (await readdir(dir)).length === 1);
    assert.deepEqual(await readdir(dir), ['index.json']);
    assert.equal(cache.totalBytes, 0);
    assert.ok(events.some((e) => e.type === 'download_failed'));
  });

  it('keeps downloading for the callers that stay when one of them aborts', async () => {
    const cache = await open();
    const ac = new AbortController();
    const src = () => parseLoraSource({ path: `${slow.base}/slow.safetensors` }, 0);
    const before = slow.requests.get('/slow.safetensors') ?? 0;
    const leaving = cache.get(src(), { ...get, signal: ac.signal });
    const staying = cache.get(src(), get);
    setTimeout(() => ac.abort(new Error('one client gone')), 200);
    await assert.rejects(leaving, /one client gone/);
    const r = await staying;
    assert.equal(r.key, sha(A));
    assert.equal(slow.requests.get('/slow.safetensors'), before + 1);
  });

  it('leaves nothing behind after a 404, an oversized file, a malformed file, or a redirect to a blocked address', async () => {
    const cache = await open();
    const cases: Array<[string, number, string, RegExp]> = [
      ['/missing.safetensors', get.maxBytes, 'invalid_lora', /answered 404/],
      ['/a.safetensors', A.length - 1, 'invalid_lora', /up to \d+ bytes/],
      ['/bad.safetensors', get.maxBytes, 'invalid_lora', /truncated/],
      ['/to-blocked', get.maxBytes, 'url_blocked', /blocked address/],
    ];
    for (const [path, maxBytes, code, re] of cases) {
      await assert.rejects(cache.get(url(path), { maxBytes }), (err: unknown) => err instanceof ApiError && err.code === code && re.test(err.message));
    }
    assert.deepEqual(await readdir(dir), ['index.json']);
  });

  it('sends HF_TOKEN to the hub and not to the CDN it redirects to', async () => {
    const cache = await open({ hfToken: 'hf_secret' });
    const hub = (repo: string) => parseLoraSource({ path: repo }, 0, { hubEndpoint: server.base });
    await cache.get(hub('owner/repo'), get);
    assert.deepEqual(auth.filter(([u]) => u.startsWith('/owner/repo/')).map(([, a]) => a), ['Bearer hf_secret']);
    const seen: Array<string | undefined> = [];
    const cdn = await startFileServer({ honourRange: true, files: { '/f.safetensors': C }, onRequest: (req) => seen.push(req.headers.authorization) });
    const hubServer = await startFileServer({ honourRange: true, files: {}, redirects: { '/o/n/resolve/main/pytorch_lora_weights.safetensors': `${cdn.base}/f.safetensors` }, onRequest: (req) => seen.push(req.headers.authorization) });
    try {
      const r = await cache.get(parseLoraSource({ path: 'o/n' }, 0, { hubEndpoint: hubServer.base }), get);
      assert.equal(r.key, sha(C));
      assert.deepEqual(seen, ['Bearer hf_secret', undefined]);
    } finally {
      await cdn.close();
      await hubServer.close();
    }
  });

  it('hashes a KLEIN_LORA_DIR file in place, once until it changes', async () => {
    const cache = await open();
    const file = join(loraDir, 'style.safetensors');
    await writeFile(file, A);
    const src = parseLoraSource({ path: 'style.safetensors' }, 0, { loraDir });
    const r = await cache.get(src, get);
    assert.deepEqual([r.key, r.path, r.bytes, r.downloaded], [sha(A), file, A.length, false]);
    await cache.get(src, get);
    assert.equal(events.filter((e) => e.type === 'hashed').length, 1);
    await new Promise((res) => setTimeout(res, 20));
    await writeFile(file, B);
    assert.equal((await cache.get(src, get)).key, sha(B));
    assert.equal(events.filter((e) => e.type === 'hashed').length, 2);
    assert.deepEqual(await readdir(dir), ['index.json']); // not copied
    await assert.rejects(cache.get(parseLoraSource({ path: 'none.safetensors' }, 0, { loraDir }), get), /no such file/);
  });

  it('finds its files again after a restart and deletes leftover temp files', async () => {
    const first = await open();
    await first.get(url('/a.safetensors'), get);
    await writeFile(join(dir, 'leftover.part'), 'x');
    const second = await open();
    const r = await second.get(url('/a.safetensors'), get);
    assert.equal(r.downloaded, false);
    assert.equal(server.requests.get('/a.safetensors'), 1);
    assert.ok(!(await readdir(dir)).includes('leftover.part'));
  });
});
