/**
 * The playground's routes through inject(): content types, caching (ETag, 304), the page's
 * Content-Security-Policy, every module the page script imports is served, and nothing
 * outside the two asset folders is reachable.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { buildServer, type BuiltServer } from '../../src/compose/server.js';
import { buildWebScript } from './build-web.js';

describe('playground routes', () => {
  let s: BuiltServer;
  let dir: string;

  before(async () => {
    buildWebScript();
    dir = mkdtempSync(join(tmpdir(), 'klein-playground-routes-'));
    const env = { ...process.env, KLEIN_DATA_DIR: dir, KLEIN_MODEL: 'simulated', KLEIN_LOG_LEVEL: 'silent' };
    s = await buildServer(loadConfig(env), env);
    await s.app.ready();
  });

  after(async () => {
    await s?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const get = (url: string, headers: Record<string, string> = {}) => s.app.inject({ method: 'GET', url, headers });

  it('serves the page at / and /playground as HTML with a CSP, an ETag and no-cache', async () => {
    const a = await get('/');
    const b = await get('/playground');
    for (const r of [a, b]) {
      assert.equal(r.statusCode, 200);
      assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
      assert.equal(r.headers['cache-control'], 'no-cache');
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.match(String(r.headers['content-security-policy']), /script-src 'self'; .*connect-src 'self'/);
      assert.match(String(r.headers.etag), /^"[\w-]{22}"$/);
    }
    assert.equal(a.body, b.body);
    assert.match(a.body, /<script type="module" src="\/playground\/main\.js"><\/script>/);
    assert.match(a.body, /href="\/playground\/playground\.css"/);
    const again = await get('/', { 'if-none-match': String(a.headers.etag) });
    assert.equal(again.statusCode, 304);
    assert.equal(again.body, '');
    assert.equal((await get('/', { 'if-none-match': '"other"' })).statusCode, 200);
  });

  it('serves the stylesheet and every module the page script imports, with their types', async () => {
    const css = await get('/playground/playground.css');
    assert.equal(css.statusCode, 200);
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    const seen = new Set<string>();
    const queue = ['main.js'];
    while (queue.length > 0) {
      const name = queue.pop()!;
      if (seen.has(name)) continue;
      seen.add(name);
      const r = await get(`/playground/${name}`);
      assert.equal(r.statusCode, 200, name);
      assert.equal(r.headers['content-type'], 'text/javascript; charset=utf-8', name);
      assert.equal(r.headers['cache-control'], 'no-cache', name);
      for (const m of r.body.matchAll(/from '\.\/([\w-]+\.js)'/g)) queue.push(m[1]!);
    }
    assert.ok(seen.size >= 8, `only ${[...seen].join(', ')}`);
  });

  it('refuses every name outside the two asset folders (404, JSON envelope)', async () => {
    for (const url of [
      '/playground/..%2F..%2Fbin%2Fklein.js', // exists: dist/web/../../bin/klein.js
      '/playground/..%2Fweb%2Fplayground.css',
      '/playground/..%2Fpackage.json',
      '/playground/..%2F..%2Fpackage.json',
      '/playground/%2e%2e%2fsrc%2fconfig.ts',
      '/playground/..%5Cpackage.json',
      '/playground/index.html',
      '/playground/tsconfig.json',
      '/playground/main.ts',
      '/playground/Main.js',
      '/playground/.main.js',
      '/playground/missing.js',
      '/playground/main.js%00.css',
    ]) {
      const r = await get(url);
      assert.equal(r.statusCode, 404, url);
      assert.equal((r.json() as { code: string }).code, 'not_found', url);
    }
  });
});
